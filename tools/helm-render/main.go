// helm-render renders a Helm chart's templates as `helm template` does, for the chart's tests. It
// is NOT Helm: it is the same template engine (Go's text/template with the sprig functions Helm
// uses) plus the few Helm objects and functions that helm/loads uses. What it lacks (subcharts,
// .Capabilities, hooks ordering, schema validation, --set) fails loudly in --strict mode rather
// than rendering something Helm would not.
//
// Why it is kept now that the tests also run a real Helm (tests/helm/helm.test.mjs): Helm's
// `lookup` answers only from a live cluster, and none is available here, so real Helm can only
// render first installs. --lookup below emulates the cluster, which is how the tests check that
// upgrades keep the generated tokens and certificate and render byte-identical. helm.test.mjs
// renders every example with both, giving helm-render the Secrets Helm generated, and requires
// identical objects, so that these checks hold for what Helm itself renders. Its --strict mode
// (below) is the other reason: Helm has none.
//
//	helm-render [--release NAME] [--namespace NS] [-f VALUES.yaml]... [--lookup OBJECTS.yaml]...
//	            [--strict] [--notes | --values-json] CHART_DIR
//
// `lookup` answers as under `helm template` (no cluster): an empty map. --lookup files (YAML, one
// or more documents, each a Kubernetes object) stand for a cluster that holds those objects:
// `lookup APIVERSION KIND NAMESPACE NAME` then returns a copy of the object of that apiVersion,
// kind, namespace and name (an empty map if there is none), and with NAME "" a map whose items are
// every such object of the namespace (of all namespaces with NAMESPACE "") — as Helm's lookup
// does on `helm install` and `helm upgrade`. It lets tests emulate an upgrade; it does not
// emulate the API server (no defaulting, no RBAC).
//
// Manifests go to stdout in `helm template`'s format: one document per object, each after "---"
// and a "# Source: CHART/templates/FILE" line, with the same text as Helm's. The ORDER differs:
// helm-render prints the files in name order, while Helm sorts the objects by kind in its install
// order (NetworkPolicy, PodDisruptionBudget, ServiceAccount, Secret, ConfigMap, ... Deployment,
// HorizontalPodAutoscaler, Ingress, then kinds it does not know, such as Certificate and
// ServiceMonitor) and prints hooks, such as the `helm test` pod, last: compare sets of objects,
// not sequences. Likewise, when several templates fail, helm-render reports the first in name
// order, Helm possibly another one. --notes prints the rendered NOTES.txt instead (it is
// rendered, and its errors reported, either way). --values-json prints the merged values as JSON
// instead of rendering: what Helm validates against values.schema.json.
//
// --strict executes the templates with missingkey=error, so that a misspelt value path such as
// $controller.revisionHistoryLimt fails. Helm has no such mode: `helm lint --strict` (4.1) only
// turns lint warnings into errors and renders a missing key as empty, as helm.test.mjs shows.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"gopkg.in/yaml.v2"
)

// chartMeta holds the Chart.yaml fields templates read as .Chart.X; Helm exposes them with these
// Go field names.
type chartMeta struct {
	APIVersion  string `yaml:"apiVersion"`
	Name        string `yaml:"name"`
	Version     string `yaml:"version"`
	AppVersion  string `yaml:"appVersion"`
	Description string `yaml:"description"`
	Type        string `yaml:"type"`
	KubeVersion string `yaml:"kubeVersion"`
}

// files is .Files: the chart's own files, read relative to its root. Like Helm, a missing file
// reads as "" and templates/ is not part of it.
type files struct{ root string }

func (f files) GetBytes(name string) []byte {
	clean := path.Clean("/" + name)[1:]
	if clean == "" || strings.HasPrefix(clean, "templates/") {
		return nil
	}
	data, err := os.ReadFile(filepath.Join(f.root, filepath.FromSlash(clean)))
	if err != nil {
		return nil
	}
	return data
}

func (f files) Get(name string) string { return string(f.GetBytes(name)) }

type valueFiles []string

func (v *valueFiles) String() string     { return strings.Join(*v, ",") }
func (v *valueFiles) Set(s string) error { *v = append(*v, s); return nil }

func main() {
	release := flag.String("release", "loads", "release name (.Release.Name)")
	namespace := flag.String("namespace", "default", "release namespace (.Release.Namespace)")
	strict := flag.Bool("strict", false, "a missing map key (a misspelt .Values path) is an error")
	notes := flag.Bool("notes", false, "print the rendered NOTES.txt instead of the manifests")
	valuesJSON := flag.Bool("values-json", false, "print the merged values as JSON, render nothing")
	var values, lookups valueFiles
	flag.Var(&values, "f", "values file merged over values.yaml (repeatable, later wins)")
	flag.Var(&lookups, "lookup", "objects `lookup` finds, as if they were in the cluster (repeatable)")
	flag.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: helm-render [--release NAME] [--namespace NS] [-f VALUES]... [--lookup OBJECTS]... [--strict] [--notes | --values-json] CHART_DIR")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	var out string
	var err error
	if *valuesJSON {
		out, err = mergedValuesJSON(flag.Arg(0), values)
	} else {
		var cluster []map[string]interface{}
		cluster, err = loadObjects(lookups)
		if err == nil {
			out, err = render(flag.Arg(0), *release, *namespace, values, cluster, *strict, *notes)
		}
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "helm-render: %v\n", err)
		os.Exit(1)
	}
	os.Stdout.WriteString(out)
}

// mergedValues is values.yaml with the -f files merged over it in order.
func mergedValues(chartDir string, valueFiles []string) (map[string]interface{}, error) {
	values, err := loadValues(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		return nil, err
	}
	for _, file := range valueFiles {
		override, err := loadValues(file)
		if err != nil {
			return nil, err
		}
		values = coalesce(values, override)
	}
	return values, nil
}

func mergedValuesJSON(chartDir string, valueFiles []string) (string, error) {
	values, err := mergedValues(chartDir, valueFiles)
	if err != nil {
		return "", err
	}
	data, err := json.MarshalIndent(values, "", "  ")
	return string(data) + "\n", err
}

func render(chartDir, release, namespace string, valueFiles []string, cluster []map[string]interface{}, strict, notesOnly bool) (string, error) {
	var chart chartMeta
	if err := readYAML(filepath.Join(chartDir, "Chart.yaml"), &chart); err != nil {
		return "", err
	}
	if chart.Name == "" {
		return "", fmt.Errorf("%s: no name", filepath.Join(chartDir, "Chart.yaml"))
	}
	values, err := mergedValues(chartDir, valueFiles)
	if err != nil {
		return "", err
	}

	// Helm names every template file CHART/templates/REL, which is also how `include` of a whole
	// file (the checksum annotations) addresses it.
	basePath := chart.Name + "/templates"
	tmpl := template.New("gotpl")
	if strict {
		tmpl.Option("missingkey=error")
	} else {
		tmpl.Option("missingkey=zero")
	}
	tmpl.Funcs(funcMap(tmpl, cluster))
	var names []string
	templatesDir := filepath.Join(chartDir, "templates")
	err = filepath.WalkDir(templatesDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(templatesDir, p)
		name := basePath + "/" + filepath.ToSlash(rel)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if _, err := tmpl.New(name).Parse(string(data)); err != nil {
			return err
		}
		names = append(names, name)
		return nil
	})
	if err != nil {
		return "", err
	}
	sort.Strings(names)

	// One map shared by every file, as in Helm: a value a template memoizes with `set` (the
	// generated tokens) is seen by the files rendered after it.
	top := map[string]interface{}{
		"Chart":  chart,
		"Values": values,
		"Files":  files{root: chartDir},
		"Release": map[string]interface{}{
			"Name":      release,
			"Namespace": namespace,
			"Service":   "Helm",
			"IsInstall": true,
			"IsUpgrade": false,
			"Revision":  1,
		},
	}
	var manifests, notes strings.Builder
	for _, name := range names {
		if strings.HasPrefix(path.Base(name), "_") {
			continue
		}
		top["Template"] = map[string]interface{}{"Name": name, "BasePath": basePath}
		var buf strings.Builder
		if err := tmpl.ExecuteTemplate(&buf, name, top); err != nil {
			return "", cleanupError(err)
		}
		text := buf.String()
		if !strict {
			text = strings.ReplaceAll(text, "<no value>", "")
		}
		if path.Base(name) == "NOTES.txt" {
			notes.WriteString(text)
			continue
		}
		for _, doc := range splitDocuments(text) {
			fmt.Fprintf(&manifests, "---\n# Source: %s\n%s\n", name, doc)
		}
	}
	if notesOnly {
		return notes.String(), nil
	}
	return manifests.String(), nil
}

var documentSeparator = regexp.MustCompile(`(?m)^---[ \t]*$`)

// splitDocuments returns the non-empty YAML documents of a rendered file, trimmed as Helm prints
// them (a document of only comments is dropped too, as Helm drops it).
func splitDocuments(text string) []string {
	var docs []string
	for _, doc := range documentSeparator.Split(text, -1) {
		doc = strings.TrimSpace(doc)
		if doc == "" {
			continue
		}
		onlyComments := true
		for _, line := range strings.Split(doc, "\n") {
			if l := strings.TrimSpace(line); l != "" && !strings.HasPrefix(l, "#") {
				onlyComments = false
				break
			}
		}
		if !onlyComments {
			docs = append(docs, doc)
		}
	}
	return docs
}

var execError = regexp.MustCompile(`^template: (\S+?): executing .*? at <.*?>: error calling (?:required|fail): ([\s\S]*)$`)

// cleanupError shortens `required` and `fail` errors the way Helm prints them:
// "execution error at (FILE:LINE:COL): MESSAGE".
func cleanupError(err error) error {
	if m := execError.FindStringSubmatch(err.Error()); m != nil {
		return fmt.Errorf("execution error at (%s): %s", m[1], m[2])
	}
	return err
}

func funcMap(tmpl *template.Template, cluster []map[string]interface{}) template.FuncMap {
	funcs := sprig.TxtFuncMap()
	// Helm removes these so that a chart cannot read the environment of whoever renders it.
	delete(funcs, "env")
	delete(funcs, "expandenv")
	depth := 0
	funcs["include"] = func(name string, data interface{}) (string, error) {
		if depth++; depth > 1000 {
			return "", fmt.Errorf("include of %q nested more than 1000 deep", name)
		}
		defer func() { depth-- }()
		var buf strings.Builder
		err := tmpl.ExecuteTemplate(&buf, name, data)
		return buf.String(), err
	}
	funcs["tpl"] = func(text string, data interface{}) (string, error) {
		clone, err := tmpl.Clone()
		if err != nil {
			return "", err
		}
		t, err := clone.New("tpl").Parse(text)
		if err != nil {
			return "", err
		}
		var buf strings.Builder
		err = t.Execute(&buf, data)
		return strings.ReplaceAll(buf.String(), "<no value>", ""), err
	}
	funcs["required"] = func(message string, value interface{}) (interface{}, error) {
		if value == nil {
			return nil, errors.New(message)
		}
		if s, ok := value.(string); ok && s == "" {
			return value, errors.New(message)
		}
		return value, nil
	}
	funcs["toYaml"] = toYAML
	funcs["lookup"] = func(apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
		return lookup(cluster, apiVersion, kind, namespace, name)
	}
	funcs["toJson"] = func(v interface{}) string {
		data, err := json.Marshal(v)
		if err != nil {
			return ""
		}
		return string(data)
	}
	funcs["fromYaml"] = func(text string) map[string]interface{} {
		var v interface{}
		if err := yaml.Unmarshal([]byte(text), &v); err != nil {
			return map[string]interface{}{"Error": err.Error()}
		}
		m, _ := normalize(v).(map[string]interface{})
		return m
	}
	return funcs
}

// toYAML formats like Helm's toYaml (sigs.k8s.io/yaml): through JSON, so keys are sorted and
// whole numbers print without a fraction, with 2-space indent and sequences not indented under
// their key, and no final newline.
func toYAML(v interface{}) string {
	data, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	var generic interface{}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&generic); err != nil {
		return ""
	}
	out, err := yaml.Marshal(generic)
	if err != nil {
		return ""
	}
	return strings.TrimSuffix(string(out), "\n")
}

// loadObjects reads the --lookup files: every YAML document of each is one object.
func loadObjects(files []string) ([]map[string]interface{}, error) {
	if len(files) == 0 {
		return nil, nil // no cluster: lookup finds nothing, as under `helm template`
	}
	objects := []map[string]interface{}{}
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var raw interface{}
			if err := dec.Decode(&raw); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return nil, fmt.Errorf("%s: %v", file, err)
			}
			if raw == nil {
				continue
			}
			object, ok := normalize(raw).(map[string]interface{})
			if !ok {
				return nil, fmt.Errorf("%s: a document that is not an object", file)
			}
			objects = append(objects, object)
		}
	}
	return objects, nil
}

// lookup is Helm's lookup over the --lookup objects. Like Helm's, it returns copies: a template
// that changes what it got does not change what the next lookup returns.
func lookup(cluster []map[string]interface{}, apiVersion, kind, namespace, name string) (map[string]interface{}, error) {
	if cluster == nil {
		return map[string]interface{}{}, nil
	}
	items := []interface{}{}
	for _, object := range cluster {
		metadata, _ := object["metadata"].(map[string]interface{})
		if object["apiVersion"] != apiVersion || object["kind"] != kind || metadata == nil {
			continue
		}
		if namespace != "" && metadata["namespace"] != namespace {
			continue
		}
		if name != "" && metadata["name"] != name {
			continue
		}
		copied, err := deepCopy(object)
		if err != nil {
			return nil, err
		}
		if name != "" {
			return copied, nil
		}
		items = append(items, copied)
	}
	if name != "" {
		return map[string]interface{}{}, nil
	}
	return map[string]interface{}{"apiVersion": apiVersion, "kind": kind + "List", "items": items}, nil
}

func deepCopy(object map[string]interface{}) (map[string]interface{}, error) {
	data, err := json.Marshal(object)
	if err != nil {
		return nil, err
	}
	var copied map[string]interface{}
	err = json.Unmarshal(data, &copied)
	return copied, err
}

func readYAML(file string, out interface{}) error {
	data, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	if err := yaml.Unmarshal(data, out); err != nil {
		return fmt.Errorf("%s: %v", file, err)
	}
	return nil
}

// loadValues reads a values file as Helm does: YAML 1.1, then through JSON, so every number is a
// float64 (as in Helm, where 1000000 prints as 1e+06) and every map has string keys.
func loadValues(file string) (map[string]interface{}, error) {
	var raw interface{}
	if err := readYAML(file, &raw); err != nil {
		return nil, err
	}
	if raw == nil {
		return map[string]interface{}{}, nil
	}
	m, ok := normalize(raw).(map[string]interface{})
	if !ok {
		return nil, fmt.Errorf("%s: not a map of values", file)
	}
	return m, nil
}

func normalize(v interface{}) interface{} {
	switch t := v.(type) {
	case map[interface{}]interface{}:
		m := make(map[string]interface{}, len(t))
		for k, val := range t {
			m[fmt.Sprint(k)] = normalize(val)
		}
		return m
	case []interface{}:
		for i := range t {
			t[i] = normalize(t[i])
		}
		return t
	case int:
		return float64(t)
	case int64:
		return float64(t)
	case uint64:
		return float64(t)
	default:
		return v
	}
}

// coalesce merges override into base as Helm merges -f files: maps merge key by key, anything
// else replaces, and a null removes the key (how a user unsets a default).
func coalesce(base, override map[string]interface{}) map[string]interface{} {
	for key, value := range override {
		if value == nil {
			delete(base, key)
			continue
		}
		baseMap, baseIsMap := base[key].(map[string]interface{})
		overrideMap, overrideIsMap := value.(map[string]interface{})
		if baseIsMap && overrideIsMap {
			base[key] = coalesce(baseMap, overrideMap)
		} else {
			base[key] = value
		}
	}
	return base
}
