// Package pilotdump runs Istio 1.30's own pilot (istio.io/istio pilot/test/xds, the in-process fake discovery server
// upstream's multicluster tests use, e.g. pilot/pkg/xds/mesh_network_test.go) on the multi-primary-multi-network
// scenario and writes what it generates as JSON for tests/upstream/test_pilot_130.py.
//
// Nothing of upstream is copied: the scenario's objects come from files the Python test writes. TestDump reads
// $PILOT_IN/<view>/view.json (defaultCluster: the istiod's own cluster; clusters: one registry per name, as a remote
// secret adds one; proxies: name -> {type, id, ip, metadata}, metadata in the node-metadata JSON an istio-agent
// sends: NETWORK, CLUSTER_ID, LABELS, NAMESPACE, DNS_CAPTURE, REQUESTED_NETWORK_VIEW, ISTIO_VERSION),
// configs.yaml (Istio configs) and kube-<cluster>.yaml (Kubernetes objects of that cluster), and writes
// $PILOT_OUT/<view>/
//
//	<proxy>.json      envoy.admin.v3 ConfigDump: clusters, listeners, routes, endpoints (protojson, proto names)
//	<proxy>.nds.json  the DNS name table (istio.networking.nds.v1 NameTable) pilot builds for the proxy
//	gateways.json     the network gateways pilot's push context knows (network, cluster, address, port)
//	networks.json     per cluster, the network pilot's Kubernetes controller gives each Pod when it watches the
//	                  istio-system namespace (SystemNamespace set; the fake discovery server does not set it)
package pilotdump

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"

	"istio.io/istio/pilot/pkg/model"
	"istio.io/istio/pilot/pkg/networking/core"
	"istio.io/istio/pilot/pkg/serviceregistry"
	kubecontroller "istio.io/istio/pilot/pkg/serviceregistry/kube/controller"
	endpointsbuilder "istio.io/istio/pilot/pkg/xds/endpoints"
	"istio.io/istio/pilot/test/xdstest"
	"istio.io/istio/pkg/cluster"
	"istio.io/istio/pkg/config/mesh"
	"istio.io/istio/pkg/config/mesh/meshwatcher"
	kubelib "istio.io/istio/pkg/kube"
)

func env(t *testing.T, key string) string {
	v := os.Getenv(key)
	if v == "" {
		t.Skipf("%s is not set: this test is driven by tests/upstream/test_pilot_130.py", key)
	}
	return v
}

type proxySpec struct {
	Type     string             `json:"type"` // "sidecar" or "router"
	ID       string             `json:"id"`   // pod.namespace
	IP       string             `json:"ip"`
	Metadata model.NodeMetadata `json:"metadata"`
}

type viewSpec struct {
	DefaultCluster string               `json:"defaultCluster"`
	Clusters       []string             `json:"clusters"`
	Proxies        map[string]proxySpec `json:"proxies"`
}

func (p proxySpec) proxy() *model.Proxy {
	typ := model.SidecarProxy
	if p.Type == "router" {
		typ = model.Router
	}
	md := p.Metadata
	return &model.Proxy{
		Type:            typ,
		ID:              p.ID,
		IPAddresses:     []string{p.IP},
		ConfigNamespace: md.Namespace,
		Labels:          md.Labels,
		DNSDomain:       md.Namespace + ".svc.cluster.local",
		Metadata:        &md,
	}
}

func readFile(t *testing.T, path string) string {
	b, err := os.ReadFile(path)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func marshal(t *testing.T, m proto.Message) []byte {
	out, err := protojson.MarshalOptions{UseProtoNames: true, Indent: "  "}.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func write(t *testing.T, path string, data []byte) {
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// kubeDocs splits multi-document YAML on its `---` lines and drops documents with nothing but blanks and comments
// (the fake server splits on "\n---\n" itself and fails on an empty document).
func kubeDocs(text string) string {
	var docs, cur []string
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
	return strings.Join(docs, "\n---\n")
}

func decodeObjects(t *testing.T, text string) []runtime.Object {
	var objs []runtime.Object
	for _, doc := range strings.Split(text, "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		o, _, err := kubelib.IstioCodec.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decoding %q: %v", doc, err)
		}
		objs = append(objs, o)
	}
	return objs
}

func dumpView(t *testing.T, in, out string) {
	var spec viewSpec
	if err := json.Unmarshal([]byte(readFile(t, filepath.Join(in, "view.json"))), &spec); err != nil {
		t.Fatalf("%s/view.json: %v", in, err)
	}
	m := mesh.DefaultMeshConfig()
	// One endpoint index for every registry: what the discovery server's own updater does (pilot/pkg/xds eds.go).
	index := model.NewEndpointIndex(model.DisabledCache{})
	updater := model.NewEndpointIndexUpdater(index)
	var registries []serviceregistry.Instance
	controllers := map[string]*kubecontroller.FakeController{}
	pods := map[string][]*corev1.Pod{}
	for _, c := range spec.Clusters {
		objs := decodeObjects(t, kubeDocs(readFile(t, filepath.Join(in, "kube-"+c+".yaml"))))
		// As istiod builds each cluster's registry (pilot/pkg/serviceregistry/kube/controller/multicluster.go):
		// the system namespace watched for its network label, the config cluster its own.
		k, _ := kubecontroller.NewFakeControllerWithOptions(t, kubecontroller.FakeControllerOptions{
			Client:          kubelib.NewFakeClient(objs...),
			ClusterID:       cluster.ID(c),
			DomainSuffix:    "cluster.local",
			XDSUpdater:      updater,
			SystemNamespace: "istio-system",
			ConfigCluster:   c == spec.DefaultCluster,
			MeshWatcher:     meshwatcher.NewTestWatcher(m),
			SkipRun:         true, // the aggregate registry runs it
		})
		controllers[c] = k
		for _, o := range objs {
			if pod, ok := o.(*corev1.Pod); ok {
				pods[c] = append(pods[c], pod)
			}
		}
		registries = append(registries, k)
	}
	cg := core.NewConfigGenTest(t, core.TestOptions{
		ConfigString:      readFile(t, filepath.Join(in, "configs.yaml")),
		MeshConfig:        m,
		ServiceRegistries: registries,
		ClusterID:         cluster.ID(spec.DefaultCluster),
		XDSUpdater:        updater,
		SkipRun:           true,
	})
	env := cg.Env()
	env.EndpointIndex = index
	cg.Run()
	if err := env.InitNetworksManager(updater); err != nil {
		t.Fatal(err)
	}

	// The registries handle their informers' events asynchronously: build a fresh push context from everything
	// they hold and dump, until two dumps 300 ms apart are the same.
	var files map[string][]byte
	deadline := time.Now().Add(30 * time.Second)
	for {
		time.Sleep(300 * time.Millisecond)
		pc := model.NewPushContext()
		pc.InitContext(env, nil, nil)
		env.SetPushContext(pc)
		next := dumpAll(t, spec, cg, index, controllers, pods)
		if files != nil && sameFiles(files, next) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pilot's output kept changing for 30 s")
		}
		files = next
	}
	for name, data := range files {
		write(t, filepath.Join(out, name), data)
	}
}

func sameFiles(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if string(b[k]) != string(v) {
			return false
		}
	}
	return true
}

func jsonOf(t *testing.T, v any) []byte {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func dumpAll(t *testing.T, spec viewSpec, cg *core.ConfigGenTest, index *model.EndpointIndex,
	controllers map[string]*kubecontroller.FakeController, pods map[string][]*corev1.Pod,
) map[string][]byte {
	files := map[string][]byte{}
	pc := cg.PushContext()
	type gateway struct {
		Network string `json:"network"`
		Cluster string `json:"cluster"`
		Addr    string `json:"addr"`
		Port    uint32 `json:"port"`
	}
	gws := []gateway{}
	for _, g := range pc.NetworkManager().AllGateways() {
		gws = append(gws, gateway{string(g.Network), string(g.Cluster), g.Addr, g.Port})
	}
	sort.Slice(gws, func(i, j int) bool { return fmt.Sprint(gws[i]) < fmt.Sprint(gws[j]) })
	files["gateways.json"] = jsonOf(t, gws)

	for name, ps := range spec.Proxies {
		p := cg.SetupProxy(ps.proxy())
		cds := cg.Clusters(p)
		clusters := &adminv3.ClustersConfigDump{}
		for _, c := range cds {
			clusters.DynamicActiveClusters = append(clusters.DynamicActiveClusters,
				&adminv3.ClustersConfigDump_DynamicCluster{Cluster: anyOf(t, c)})
		}
		listeners := &adminv3.ListenersConfigDump{}
		for _, l := range cg.Listeners(p) {
			listeners.DynamicListeners = append(listeners.DynamicListeners, &adminv3.ListenersConfigDump_DynamicListener{
				Name: l.Name, ActiveState: &adminv3.ListenersConfigDump_DynamicListenerState{Listener: anyOf(t, l)}})
		}
		routes := &adminv3.RoutesConfigDump{}
		for _, r := range cg.Routes(p) {
			routes.DynamicRouteConfigs = append(routes.DynamicRouteConfigs,
				&adminv3.RoutesConfigDump_DynamicRouteConfig{RouteConfig: anyOf(t, r)})
		}
		endpoints := &adminv3.EndpointsConfigDump{}
		// EDS for every EDS cluster, as the discovery server's EdsGenerator builds it (pilot/test/xds Endpoints).
		for _, c := range xdstest.ExtractEdsClusterNames(cds) {
			builder := endpointsbuilder.NewEndpointBuilder(c, p, pc)
			endpoints.DynamicEndpointConfigs = append(endpoints.DynamicEndpointConfigs,
				&adminv3.EndpointsConfigDump_DynamicEndpointConfig{
					EndpointConfig: anyOf(t, builder.BuildClusterLoadAssignment(index))})
		}
		cd := &adminv3.ConfigDump{Configs: []*anypb.Any{
			anyOf(t, clusters), anyOf(t, listeners), anyOf(t, routes), anyOf(t, endpoints)}}
		files[name+".json"] = marshal(t, cd)
		files[name+".nds.json"] = marshal(t, cg.ConfigGen.BuildNameTable(p, pc))
	}

	// The network each cluster's controller gives its Pods (Controller.Network: the pod's topology.istio.io/network
	// label, else the system namespace's, else meshNetworks).
	networks := map[string]map[string]string{}
	for c, k := range controllers {
		networks[c] = map[string]string{}
		for _, pod := range pods[c] {
			networks[c][pod.Namespace+"/"+pod.Name] = string(k.Network(pod.Status.PodIP, pod.Labels))
		}
	}
	files["networks.json"] = jsonOf(t, networks)
	return files
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
			dir := filepath.Join(out, view)
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			dumpView(t, filepath.Join(in, view), dir)
		})
		views++
	}
	if views == 0 {
		t.Fatalf("%s has no view directories", in)
	}
}
