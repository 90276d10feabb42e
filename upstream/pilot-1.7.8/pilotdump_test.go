// Package pilotdump runs Istio's own pilot (istio.io/istio pilot/pkg/xds, the in-process fake discovery server
// upstream's tests use) on the lab's scenario and writes what it generates as Envoy /config_dump JSON.
//
// Nothing of upstream is copied: the scenario's objects come from files the lab's Python tests write, and two
// tests, chosen with -test.run, do the work (tests/upstream/test_pilot.py drives them):
//
//	TestRender  PILOT_RENDER_FILES (os.PathListSeparator-separated IstioOperator files, as `istioctl manifest
//	            generate -f ... -f ...`), PILOT_MANIFESTS (the release's manifests/ directory, as `-d`):
//	            istioctl's own manifest generation (operator/pkg/manifest GenManifests) in-process; writes the
//	            IngressGateways component's networking.istio.io objects to $PILOT_OUT/preconfigured.yaml.
//	TestDump    $PILOT_IN/<view>/{proxy.json,configs.yaml,kube.yaml} for each view: one fake discovery server per
//	            view with those Istio configs and Kubernetes objects, the proxy described by proxy.json; writes
//	            $PILOT_OUT/<view>.json with ClustersConfigDump, ListenersConfigDump, RoutesConfigDump and
//	            EndpointsConfigDump (envoy.admin.v3, as protojson with the proto field names, like Envoy's admin).
package pilotdump

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"github.com/golang/protobuf/ptypes/any"
	"google.golang.org/protobuf/encoding/protojson"
	protov2 "google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"istio.io/istio/operator/pkg/manifest"
	"istio.io/istio/operator/pkg/name"
	"istio.io/istio/operator/pkg/util/clog"
	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/xds"
)

func env(t *testing.T, key string) string {
	v := os.Getenv(key)
	if v == "" {
		t.Skipf("%s is not set: this test is driven by tests/upstream/test_pilot.py", key)
	}
	return v
}

// yamlDocs splits multi-document YAML on its `---` lines and drops documents with nothing but blanks and comments.
func yamlDocs(text string) []string {
	var docs []string
	var cur []string
	meaningful := false
	flush := func() {
		if meaningful {
			docs = append(docs, strings.Join(cur, "\n"))
		}
		cur, meaningful = nil, false
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "---") {
			flush()
			continue
		}
		cur = append(cur, line)
		if s := strings.TrimSpace(line); s != "" && !strings.HasPrefix(s, "#") {
			meaningful = true
		}
	}
	flush()
	return docs
}

func TestRender(t *testing.T) {
	files := filepath.SplitList(env(t, "PILOT_RENDER_FILES"))
	manifests := env(t, "PILOT_MANIFESTS")
	out := env(t, "PILOT_OUT")
	mm, _, err := manifest.GenManifests(files, []string{"installPackagePath=" + manifests}, false, nil,
		clog.NewDefaultLogger())
	if err != nil {
		t.Fatalf("manifest generation: %v", err)
	}
	var keep []string
	for _, text := range mm[name.IngressComponentName] {
		for _, doc := range yamlDocs(text) {
			if strings.Contains(doc, "apiVersion: networking.istio.io/") {
				keep = append(keep, strings.TrimRight(doc, "\n"))
			}
		}
	}
	if len(keep) == 0 {
		t.Fatalf("the IngressGateways component rendered no networking.istio.io object")
	}
	if err := os.WriteFile(filepath.Join(out, "preconfigured.yaml"),
		[]byte(strings.Join(keep, "\n---\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// proxySpec is what a view's proxy.json says about the node pilot generates for (the fields an Envoy's node
// metadata carries: pilot/pkg/model/context.go NodeMetadata).
type proxySpec struct {
	Type         string            `json:"type"` // "sidecar" or "router"
	ID           string            `json:"id"`   // pod.namespace
	Namespace    string            `json:"namespace"`
	IP           string            `json:"ip"`
	Labels       map[string]string `json:"labels"`
	RouterMode   string            `json:"routerMode"`
	IstioVersion string            `json:"istioVersion"`
}

func (p proxySpec) proxy() *model.Proxy {
	typ := model.SidecarProxy
	if p.Type == "router" {
		typ = model.Router
	}
	return &model.Proxy{
		Type:            typ,
		ID:              p.ID,
		IPAddresses:     []string{p.IP},
		ConfigNamespace: p.Namespace,
		DNSDomain:       p.Namespace + ".svc.cluster.local",
		IstioVersion:    model.ParseIstioVersion(p.IstioVersion),
		Metadata: &model.NodeMetadata{
			Namespace:    p.Namespace,
			Labels:       p.Labels,
			RouterMode:   p.RouterMode,
			IstioVersion: p.IstioVersion,
		},
	}
}

func readFile(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func anyOf(t *testing.T, m protov2.Message) *any.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func dump(t *testing.T, dir string) []byte {
	var spec proxySpec
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(dir, "proxy.json"))), &spec); err != nil {
		t.Fatalf("%s/proxy.json: %v", dir, err)
	}
	// The fake server splits Kubernetes objects on "---" itself and fails on an empty one.
	kube := strings.Join(yamlDocs(readFile(t, filepath.Join(dir, "kube.yaml"))), "\n---\n")
	s := xds.NewFakeDiscoveryServer(t, xds.FakeOptions{
		ConfigString:           readFile(t, filepath.Join(dir, "configs.yaml")),
		KubernetesObjectString: kube,
	})
	settle(t, s)
	p := s.SetupProxy(spec.proxy())

	clusters := &adminv3.ClustersConfigDump{}
	for _, c := range s.Clusters(p) {
		clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters,
			&adminv3.ClustersConfigDump_DynamicCluster{Cluster: anyOf(t, c)})
	}
	listeners := &adminv3.ListenersConfigDump{}
	for _, l := range s.Listeners(p) {
		listeners.DynamicListeners = append(listeners.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
			Name: l.Name, ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{Listener: anyOf(t, l)}})
	}
	routes := &adminv3.RoutesConfigDump{}
	for _, r := range s.Routes(p) {
		routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs,
			&adminv3.RoutesConfigDump_DynamicRouteConfig{RouteConfig: anyOf(t, r)})
	}
	endpoints := &adminv3.EndpointsConfigDump{}
	cla := s.Endpoints(p)
	sort.SliceStable(cla, func(i, j int) bool { return cla[i].ClusterName < cla[j].ClusterName })
	for _, e := range cla {
		endpoints.DynamicEndpointConfigs = append(endpoints.DynamicEndpointConfigs,
			&adminv3.EndpointsConfigDump_DynamicEndpointConfig{EndpointConfig: anyOf(t, e)})
	}
	// The order of Envoy's own /config_dump?include_eds.
	cd := &adminv3.ConfigDump{Configs: []*any.Any{
		anyOf(t, clusters), anyOf(t, listeners), anyOf(t, routes), anyOf(t, endpoints)}}
	out, err := protojson.MarshalOptions{UseProtoNames: true, Indent: "  "}.Marshal(cd)
	if err != nil {
		t.Fatalf("%s: config dump to JSON: %v", dir, err)
	}
	return out
}

func TestDump(t *testing.T) {
	in := env(t, "PILOT_IN")
	out := env(t, "PILOT_OUT")
	entries, err := os.ReadDir(in)
	if err != nil {
		t.Fatal(err)
	}
	views := 0
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		view := e.Name()
		t.Run(view, func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(out, view+".json"), dump(t, filepath.Join(in, view)), 0o644); err != nil {
				t.Fatal(err)
			}
		})
		views++
	}
	if views == 0 {
		t.Fatalf("%s has no view directories", in)
	}
}

// settle waits until the fake server's push context is one built from every config. NewFakeDiscoveryServer starts a
// goroutine that rebuilds the push context for each queued event, and an incremental rebuild (ConfigsUpdated: the
// ServiceEntries) copies the EnvoyFilter index from the context it started from, which can be one built by the
// Kubernetes service handler before the configs were created: then the gateway's 15443 chain lacks the
// tcp_cluster_rewrite now and then (seen twice). So: wait until no rebuild has happened for a while, ask
// for a full one (a PushRequest with no ConfigsUpdated builds a new context from the store), and wait for it.
func settle(t *testing.T, s *xds.FakeDiscoveryServer) {
	t.Helper()
	quiet := func(what string) *model.PushContext {
		deadline := time.Now().Add(30 * time.Second)
		last, since := s.PushContext(), time.Now()
		for time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
			if pc := s.PushContext(); pc != last {
				last, since = pc, time.Now()
			} else if time.Since(since) >= 300*time.Millisecond {
				return last
			}
		}
		t.Fatalf("the push context kept changing for 30 s (%s)", what)
		return nil
	}
	before := quiet("after start")
	s.Discovery.ConfigUpdate(&model.PushRequest{Full: true})
	// 1.7.8's goroutine rebuilds at once (no debounce); 1.7.0's fake server reads and drops every event, so it never
	// rebuilds asynchronously and has no such race: its context is the one NewFakeDiscoveryServer built last.
	deadline := time.Now().Add(3 * time.Second)
	for s.PushContext() == before {
		if time.Now().After(deadline) {
			t.Logf("no asynchronous push-context rebuild in this version: using the one built at start")
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	quiet("after the full push request")
}
