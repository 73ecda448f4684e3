// Not built in module mode: build.sh builds in GOPATH mode against Debian's Go sources
// (/usr/share/gocode), because no module proxy is reachable. This file must still exist: it is what
// lets GOPATH mode resolve sprig's import path github.com/Masterminds/sprig/v3 to Debian's
// .../Masterminds/sprig ("minimal module compatibility").
module loads/helm-render

go 1.19
