#!/usr/bin/env bash
# Builds the container images of docker/Dockerfile: localhost/loads-controller:TAG,
# localhost/loads-worker:TAG and localhost/loads-runner:TAG (TAG: the project version in
# CMakeLists.txt). Arguments name the targets to build (default: controller worker runner).
#
# With a Docker daemon (`docker info` succeeds) it runs `docker build`. Otherwise it runs
# `buildah bud --isolation chroot --network host`, as root, installing buildah and debootstrap
# (the "images" group of scripts/deps.txt) if they are missing. The base images debian:bookworm
# and debian:bookworm-slim are used from local storage, else pulled, else made with
# `debootstrap --variant=minbase bookworm` from the Debian mirror of /etc/apt and imported
# under those names. Running it again rebuilds from the cached layers.
#
# Environment:
#   LOADS_IMAGE_TAG      image tag (default: the project version)
#   LOADS_IMAGE_PREFIX   image name prefix (default: localhost/)
#   LOADS_IMAGE_ENGINE   docker or buildah (default: docker if its daemon answers, else buildah)
#   LOADS_BUILD_JOBS     compile jobs inside the build stage (default 2)
#   LOADS_DEBIAN_MIRROR  Debian mirror for debootstrap (default: the first one in /etc/apt)
#   LOADS_SOURCE_URL     the images' org.opencontainers.image.source and .url labels
#                        (default: the `home` of helm/loads/Chart.yaml)
#   SOURCE_DATE_EPOCH    the time of their org.opencontainers.image.created label, in seconds
#                        since 1970 (default: the commit time of HEAD; without git, now)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
say() { echo "build-images: $*" >&2; }
die() { say "error: $*"; exit 1; }

version="$(sed -n 's/^project(loads VERSION \([0-9][0-9.]*\).*/\1/p' "$root/CMakeLists.txt")"
[[ -n "$version" ]] || die "no 'project(loads VERSION x.y.z' line in $root/CMakeLists.txt"
tag="${LOADS_IMAGE_TAG:-$version}"
prefix="${LOADS_IMAGE_PREFIX-localhost/}"
jobs="${LOADS_BUILD_JOBS:-2}"
targets=("$@")
((${#targets[@]})) || targets=(controller worker runner)
for t in "${targets[@]}"; do
  [[ "$t" == controller || "$t" == worker || "$t" == runner ]] ||
    die "unknown target '$t' (targets: controller worker runner)"
done
revision="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
if [[ "$revision" != unknown ]] && [[ -n "$(git -C "$root" status --porcelain 2>/dev/null)" ]]; then
  revision="$revision-dirty"
fi
# org.opencontainers.image.created, RFC 3339 in UTC: the commit's time rather than the build's,
# so that building one commit twice gives the same labels (reproducible-builds.org's
# SOURCE_DATE_EPOCH, when set, wins). A -dirty revision still carries its commit's time.
if [[ -n "${SOURCE_DATE_EPOCH:-}" ]]; then
  epoch="$SOURCE_DATE_EPOCH"
else
  epoch="$(git -C "$root" log -1 --format=%ct 2>/dev/null || true)"
  epoch="${epoch:-$(date +%s)}"
fi
created="$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)" || die "bad SOURCE_DATE_EPOCH '$epoch'"
# org.opencontainers.image.source and .url: the chart's home, one address to set for both.
source_url="${LOADS_SOURCE_URL:-$(sed -n 's/^home:[[:space:]]*//p' "$root/helm/loads/Chart.yaml" 2>/dev/null || true)}"

engine="${LOADS_IMAGE_ENGINE:-}"
if [[ -z "$engine" ]]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker; else engine=buildah; fi
fi
case "$engine" in
  docker)
    docker info >/dev/null 2>&1 || die "LOADS_IMAGE_ENGINE=docker but 'docker info' fails: no daemon" ;;
  buildah)
    [[ $(id -u) -eq 0 ]] ||
      die "without a Docker daemon the images are built with buildah and debootstrap as root: run 'sudo $0'"
    LOADS_DEPS_GROUPS=images "$root/scripts/install-deps.sh"
    command -v buildah >/dev/null || die "buildah is not installed (apt-get install buildah)"
    ;;
  *) die "LOADS_IMAGE_ENGINE must be docker or buildah, not '$engine'" ;;
esac
say "engine $engine, tag $tag, revision $revision, targets ${targets[*]}"
say "labels: created $created, source ${source_url:-(none)}"

# ---- base images --------------------------------------------------------------------------
# The first Debian mirror (URI ending in /debian) or security mirror of /etc/apt, one-line or
# deb822 format.
apt_mirror() {
  local suffix="$1" files=()
  shopt -s nullglob
  files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
  shopt -u nullglob
  for f in "${files[@]}"; do [[ -r "$f" ]] && cat "$f"; done |
    sed -n -E "s#^[[:space:]]*(deb[[:space:]]+(\[[^]]*\][[:space:]]+)?|URIs:[[:space:]]*)(https?://[^[:space:]]+/$suffix)/?([[:space:]].*)?\$#\3#p" |
    head -n 1
}

image_exists() {
  if [[ "$engine" == docker ]]; then
    docker image inspect "$1" >/dev/null 2>&1
  else
    buildah inspect --type image "$1" >/dev/null 2>&1
  fi
}

try_pull() {
  say "trying to pull $1"
  if [[ "$engine" == docker ]]; then
    docker pull -q "$1" >/dev/null 2>&1
  else
    timeout 120 buildah pull -q "$1" >/dev/null 2>&1
  fi
}

# import ROOTFS NAME: a root file system folder as the image NAME.
import_rootfs() {
  local rootfs="$1" name="$2" c mnt
  if [[ "$engine" == docker ]]; then
    tar --numeric-owner -C "$rootfs" -c . |
      docker import -c 'CMD ["bash"]' - "$name" >/dev/null
  else
    c="$(buildah from scratch)"
    mnt="$(buildah mount "$c")"
    tar --numeric-owner -C "$rootfs" -c . | tar --numeric-owner -C "$mnt" -xp
    buildah umount "$c" >/dev/null
    buildah config --cmd bash \
      --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin "$c"
    buildah commit -q --rm "$c" "$name" >/dev/null
  fi
  say "imported $name"
}

make_bases() {
  local mirror security work rootfs start
  mirror="${LOADS_DEBIAN_MIRROR:-$(apt_mirror debian)}"
  mirror="${mirror:-http://deb.debian.org/debian}"
  security="$(apt_mirror debian-security)"
  security="${security:-http://deb.debian.org/debian-security}"
  command -v debootstrap >/dev/null || die "debootstrap is not installed (apt-get install debootstrap)"
  work="$(mktemp -d /var/tmp/loads-debootstrap.XXXXXX)"
  trap 'rm -rf "$work"' EXIT
  rootfs="$work/rootfs"
  say "debootstrap --variant=minbase bookworm from $mirror (about a minute)"
  start=$SECONDS
  debootstrap --variant=minbase bookworm "$rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 ||
    { tail -n 20 "$work/debootstrap.log" >&2; die "debootstrap failed (log above)"; }
  say "debootstrap took $((SECONDS - start)) s"

  # What a container runtime provides, or what belongs to this host, goes.
  rm -rf "${rootfs:?}"/dev/* "$rootfs"/proc/* "$rootfs"/sys/* "$rootfs"/run/* \
    "$rootfs"/var/lib/apt/lists/*
  find "$rootfs/var/cache/apt" "$rootfs/var/log" -type f -delete
  rm -f "$rootfs"/etc/resolv.conf "$rootfs"/etc/hostname "$rootfs"/etc/apt/sources.list
  printf '' >"$rootfs/etc/machine-id"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  echo 'Acquire::Languages "none";' >"$rootfs/etc/apt/apt.conf.d/90-no-languages"
  if ! image_exists debian:bookworm; then import_rootfs "$rootfs" debian:bookworm; fi

  # slim: no documentation, manual pages or translations, now or in later installs.
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/90-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$rootfs/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/usr/share/lintian/*
  find "$rootfs/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  if ! image_exists debian:bookworm-slim; then import_rootfs "$rootfs" debian:bookworm-slim; fi
  rm -rf "$work"
  trap - EXIT
}

missing=()
for base in debian:bookworm debian:bookworm-slim; do
  image_exists "$base" || try_pull "docker.io/library/$base" || missing+=("$base")
done
if ((${#missing[@]})); then
  say "${missing[*]}: not in local storage and cannot be pulled; making them with debootstrap"
  make_bases
fi

# ---- the images -----------------------------------------------------------------------------
summary=()
for target in "${targets[@]}"; do
  name="${prefix}loads-$target:$tag"
  args=(--target "$target" -t "$name" -f "$root/docker/Dockerfile"
    --build-arg LOADS_VERSION="$version" --build-arg LOADS_REVISION="$revision"
    --build-arg LOADS_CREATED="$created" --build-arg LOADS_SOURCE_URL="$source_url"
    --build-arg LOADS_BUILD_JOBS="$jobs")
  say "building $name"
  start=$SECONDS
  if [[ "$engine" == docker ]]; then
    docker build "${args[@]}" "$root"
  else
    # --layers: the build stage is compiled once and reused by the next targets.
    buildah bud --isolation chroot --network host --layers --force-rm --pull=never "${args[@]}" "$root"
  fi
  summary+=("$name built in $((SECONDS - start)) s")
done
for line in "${summary[@]}"; do say "$line"; done
if [[ "$engine" == docker ]]; then
  docker images --filter "reference=${prefix}loads-*"
else
  buildah images --filter "reference=${prefix}loads-*"
fi
