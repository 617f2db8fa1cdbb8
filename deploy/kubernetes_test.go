package deploy

// The Kubernetes manifests under deploy/kubernetes are checked the way the
// compose file is: with no cluster. Each kustomization is rendered with
// kustomize's own Go API, every object is decoded strictly into the typed
// Kubernetes structs (an unknown field or a wrong type fails, which is what
// the API server's schema would reject), and the Deployments are compared
// with what each service's config code reads (envReadsInDir in
// deploy_test.go), so a variable added to the code and forgotten in the
// manifests fails `make test`. Hydra, the gateway, the NetworkPolicies
// (evaluated for every pair of pods) and the placeholder secrets are
// checked too.

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"maps"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"

	"github.com/orderflow/orderflow/pkg/web"
)

// kustomization is one directory under deploy/kubernetes that renders to a
// full set of objects.
type kustomization struct {
	dir string // relative to the repository root
	// unset are variables the code reads that this kustomization leaves
	// unset on purpose, with the reason. The test also checks that they are
	// really absent, so the reason stays true.
	unset map[string]string
	// inCluster: the components (postgres, redis, …) are part of the
	// rendering, so every bare host name a variable points at must be one of
	// its Services.
	inCluster bool
	// external are ConfigMaps created outside kustomize that pods mount.
	external []string
	// externalSecrets are Secrets created outside kustomize that pods
	// mount: the gateway's certificate, whose key is in no repository.
	externalSecrets []string
	// hpaServices are the processes scaled on CPU.
	hpaServices []string
}

func kustomizations() []kustomization {
	scaled := []string{"order", "inventory", "payment", "identity"}
	tls := []string{"gateway-tls"}
	return []kustomization{
		{dir: "deploy/kubernetes/base", hpaServices: scaled, externalSecrets: tls},
		{dir: "deploy/kubernetes/overlays/local", inCluster: true, hpaServices: scaled, externalSecrets: tls},
		{
			dir: "deploy/kubernetes/overlays/aws",
			unset: map[string]string{
				"AWS_ENDPOINT_URL_SQS":  "real SQS: the SDK resolves the regional endpoint",
				"AWS_ACCESS_KEY_ID":     "IAM role through IRSA, from the SDK's default chain",
				"AWS_SECRET_ACCESS_KEY": "IAM role through IRSA, from the SDK's default chain",
			},
			external:        []string{"rds-ca-bundle"},
			externalSecrets: tls,
			hpaServices:     scaled,
		},
	}
}

// manifest is a rendered kustomization, decoded, by kind and name. Every
// kustomization here renders into one namespace, so names are unique per
// kind.
type manifest struct {
	deployments     map[string]*appsv1.Deployment
	statefulSets    map[string]*appsv1.StatefulSet
	services        map[string]*corev1.Service
	configMaps      map[string]*corev1.ConfigMap
	secrets         map[string]*corev1.Secret
	serviceAccounts map[string]*corev1.ServiceAccount
	pdbs            map[string]*policyv1.PodDisruptionBudget
	hpas            map[string]*autoscalingv2.HorizontalPodAutoscaler
	jobs            map[string]*batchv1.Job
	networkPolicies map[string]*networkingv1.NetworkPolicy
	others          []string // kind/name of the objects with no checks beyond the schema
}

// decodeManifest decodes YAML documents, one object each, into the typed
// structs of their apiVersion and kind. The decoding is strict: a field the
// struct lacks (a typo, or a field of another API version), a duplicate
// field or a value of the wrong type is an error, as is a kind this test has
// no schema for.
func decodeManifest(docs [][]byte) (*manifest, error) {
	m := &manifest{
		deployments:     map[string]*appsv1.Deployment{},
		statefulSets:    map[string]*appsv1.StatefulSet{},
		services:        map[string]*corev1.Service{},
		configMaps:      map[string]*corev1.ConfigMap{},
		secrets:         map[string]*corev1.Secret{},
		serviceAccounts: map[string]*corev1.ServiceAccount{},
		pdbs:            map[string]*policyv1.PodDisruptionBudget{},
		hpas:            map[string]*autoscalingv2.HorizontalPodAutoscaler{},
		jobs:            map[string]*batchv1.Job{},
		networkPolicies: map[string]*networkingv1.NetworkPolicy{},
	}
	for _, doc := range docs {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return nil, err
		}
		var obj interface{ GetName() string }
		var add func()
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			o := &appsv1.Deployment{}
			obj, add = o, func() { m.deployments[o.Name] = o }
		case "apps/v1 StatefulSet":
			o := &appsv1.StatefulSet{}
			obj, add = o, func() { m.statefulSets[o.Name] = o }
		case "v1 Service":
			o := &corev1.Service{}
			obj, add = o, func() { m.services[o.Name] = o }
		case "v1 ConfigMap":
			o := &corev1.ConfigMap{}
			obj, add = o, func() { m.configMaps[o.Name] = o }
		case "v1 Secret":
			o := &corev1.Secret{}
			obj, add = o, func() { m.secrets[o.Name] = o }
		case "v1 ServiceAccount":
			o := &corev1.ServiceAccount{}
			obj, add = o, func() { m.serviceAccounts[o.Name] = o }
		case "policy/v1 PodDisruptionBudget":
			o := &policyv1.PodDisruptionBudget{}
			obj, add = o, func() { m.pdbs[o.Name] = o }
		case "autoscaling/v2 HorizontalPodAutoscaler":
			o := &autoscalingv2.HorizontalPodAutoscaler{}
			obj, add = o, func() { m.hpas[o.Name] = o }
		case "batch/v1 Job":
			o := &batchv1.Job{}
			obj, add = o, func() { m.jobs[o.Name] = o }
		case "v1 Namespace":
			o := &corev1.Namespace{}
			obj, add = o, func() { m.others = append(m.others, "Namespace/"+o.Name) }
		case "networking.k8s.io/v1 NetworkPolicy":
			o := &networkingv1.NetworkPolicy{}
			obj, add = o, func() { m.networkPolicies[o.Name] = o }
		default:
			return nil, fmt.Errorf("no schema for apiVersion %q kind %q", tm.APIVersion, tm.Kind)
		}
		if err := yaml.UnmarshalStrict(doc, obj); err != nil {
			return nil, fmt.Errorf("%s %s: %w", tm.Kind, nameOf(doc), err)
		}
		if obj.GetName() == "" {
			return nil, fmt.Errorf("%s without metadata.name", tm.Kind)
		}
		add()
	}
	return m, nil
}

// nameOf returns metadata.name of a document that failed to decode, for the
// error message.
func nameOf(doc []byte) string {
	var o struct {
		Metadata struct {
			Name string `json:"name"`
		} `json:"metadata"`
	}
	_ = yaml.Unmarshal(doc, &o)
	return o.Metadata.Name
}

// renderKustomization runs kustomize, as `kubectl kustomize` would, on dir
// (relative to the repository root) and returns one YAML document per
// object.
func renderKustomization(dir string) ([][]byte, error) {
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(repoRoot, dir))
	if err != nil {
		return nil, err
	}
	var docs [][]byte
	for _, r := range rm.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			return nil, err
		}
		docs = append(docs, y)
	}
	return docs, nil
}

// renders holds one rendering per kustomization directory, shared by the
// tests: kustomize takes seconds under the race detector, and no test
// changes a manifest.
var renders sync.Map // dir → func() (*manifest, error)

// render renders and decodes k, failing the test on any error.
func render(t *testing.T, k kustomization) *manifest {
	t.Helper()
	f, _ := renders.LoadOrStore(k.dir, sync.OnceValues(func() (*manifest, error) {
		docs, err := renderKustomization(k.dir)
		if err != nil {
			return nil, fmt.Errorf("kustomize build %s: %w", k.dir, err)
		}
		m, err := decodeManifest(docs)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", k.dir, err)
		}
		return m, nil
	}))
	m, err := f.(func() (*manifest, error))()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// appContainer returns the Orderflow Deployment for svc and its one
// container.
func appContainer(m *manifest, svc string) (*appsv1.Deployment, *corev1.Container, error) {
	d, ok := m.deployments[svc]
	if !ok {
		return nil, nil, fmt.Errorf("no Deployment %s", svc)
	}
	if n := len(d.Spec.Template.Spec.Containers); n != 1 {
		return nil, nil, fmt.Errorf("Deployment %s has %d containers; want 1", svc, n)
	}
	return d, &d.Spec.Template.Spec.Containers[0], nil
}

// containerEnv returns the environment a container starts with, as the
// kubelet builds it: envFrom sources in order, then env, each later one
// overriding an earlier one. Values taken from the downward API are
// reported as "(downward API)". References that cannot be resolved (a
// ConfigMap, Secret or key not in the rendering and not optional) are
// returned as problems.
func containerEnv(m *manifest, c *corev1.Container) (map[string]string, []string) {
	vals := map[string]string{}
	var problems []string
	for _, src := range c.EnvFrom {
		switch {
		case src.ConfigMapRef != nil:
			cm, ok := m.configMaps[src.ConfigMapRef.Name]
			if !ok {
				if !ptrTrue(src.ConfigMapRef.Optional) {
					problems = append(problems, fmt.Sprintf("envFrom names ConfigMap %s, which is not in the rendering", src.ConfigMapRef.Name))
				}
				continue
			}
			for k, v := range cm.Data {
				vals[src.Prefix+k] = v
			}
		case src.SecretRef != nil:
			s, ok := m.secrets[src.SecretRef.Name]
			if !ok {
				if !ptrTrue(src.SecretRef.Optional) {
					problems = append(problems, fmt.Sprintf("envFrom names Secret %s, which is not in the rendering", src.SecretRef.Name))
				}
				continue
			}
			for k, v := range s.Data {
				vals[src.Prefix+k] = string(v)
			}
			for k, v := range s.StringData {
				vals[src.Prefix+k] = v
			}
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom == nil {
			vals[e.Name] = e.Value
			continue
		}
		switch vf := e.ValueFrom; {
		case vf.ConfigMapKeyRef != nil:
			ref := vf.ConfigMapKeyRef
			var v string
			cm, ok := m.configMaps[ref.Name]
			if ok {
				v, ok = cm.Data[ref.Key]
			}
			if !ok {
				if !ptrTrue(ref.Optional) {
					problems = append(problems, fmt.Sprintf("%s comes from key %s of ConfigMap %s, which is not in the rendering", e.Name, ref.Key, ref.Name))
				}
				continue
			}
			vals[e.Name] = v
		case vf.SecretKeyRef != nil:
			ref := vf.SecretKeyRef
			s, found := m.secrets[ref.Name]
			var v []byte
			ok := false
			if found {
				v, ok = s.Data[ref.Key]
				if sv, sok := s.StringData[ref.Key]; sok {
					v, ok = []byte(sv), true
				}
			}
			if !ok {
				if !ptrTrue(ref.Optional) {
					problems = append(problems, fmt.Sprintf("%s comes from key %s of Secret %s, which is not in the rendering", e.Name, ref.Key, ref.Name))
				}
				continue
			}
			vals[e.Name] = string(v)
		default:
			vals[e.Name] = "(downward API)"
		}
	}
	return vals, problems
}

func ptrTrue(b *bool) bool { return b != nil && *b }

// missingKubeEnv returns one message for each variable in reads that
// Deployment name does not set to a value, after the reference problems of
// its environment.
func missingKubeEnv(m *manifest, name string, reads []envRead) []string {
	_, c, err := appContainer(m, name)
	if err != nil {
		return []string{err.Error()}
	}
	vals, msgs := containerEnv(m, c)
	for i, p := range msgs {
		msgs[i] = fmt.Sprintf("Deployment %s: %s", name, p)
	}
	seen := map[string]bool{}
	for _, r := range reads {
		if seen[r.name] || r.optional {
			continue
		}
		seen[r.name] = true
		switch v, ok := vals[r.name]; {
		case !ok:
			msgs = append(msgs, fmt.Sprintf("Deployment %s does not set %s (read by %s)", name, r.name, r.file))
		case v == "":
			msgs = append(msgs, fmt.Sprintf("Deployment %s sets %s to an empty value (read by %s)", name, r.name, r.file))
		}
	}
	return msgs
}

// envPrefix is the prefix of the variables only svc reads.
func envPrefix(svc string) string { return strings.ToUpper(svc) + "_" }

func TestKubernetes_Render(t *testing.T) {
	t.Parallel()
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			for _, svc := range appServices() {
				if _, _, err := appContainer(m, svc.name); err != nil {
					t.Error(err)
				}
				if _, ok := m.services[svc.name]; !ok {
					t.Errorf("no Service %s", svc.name)
				}
				if _, ok := m.serviceAccounts[svc.name]; !ok {
					t.Errorf("no ServiceAccount %s", svc.name)
				}
				wantHPA := slices.Contains(k.hpaServices, svc.name)
				if _, ok := m.hpas[svc.name]; ok != wantHPA {
					t.Errorf("HorizontalPodAutoscaler %s present = %t; want %t", svc.name, ok, wantHPA)
				}
			}
			for _, msg := range workloadProblems(m, k.external, k.externalSecrets) {
				t.Error(msg)
			}
		})
	}
}

// podTemplate is a workload's name, selector and pod template.
type podTemplate struct {
	kind, name string
	selector   *metav1.LabelSelector
	template   *corev1.PodTemplateSpec
	claims     []string // a StatefulSet's volumeClaimTemplates, volumes too
}

func (m *manifest) podTemplates() []podTemplate {
	var pts []podTemplate
	for _, d := range m.deployments {
		pts = append(pts, podTemplate{"Deployment", d.Name, d.Spec.Selector, &d.Spec.Template, nil})
	}
	for _, s := range m.statefulSets {
		var claims []string
		for _, c := range s.Spec.VolumeClaimTemplates {
			claims = append(claims, c.Name)
		}
		pts = append(pts, podTemplate{"StatefulSet", s.Name, s.Spec.Selector, &s.Spec.Template, claims})
	}
	for _, j := range m.jobs {
		pts = append(pts, podTemplate{"Job", j.Name, j.Spec.Selector, &j.Spec.Template, nil})
	}
	return pts
}

// workloadProblems checks what the API server or the kubelet would reject
// or never satisfy: selectors that do not match their own pod template,
// Services selecting no pods or targeting a port no container has,
// references to ConfigMaps, Secrets and ServiceAccounts that do not exist
// (external and externalSecrets are made outside kustomize), and ConfigMap
// volume items naming keys the ConfigMap lacks.
func workloadProblems(m *manifest, external, externalSecrets []string) []string {
	var msgs []string
	for _, pt := range m.podTemplates() {
		if pt.kind != "Job" || pt.selector != nil {
			sel, err := metav1.LabelSelectorAsSelector(pt.selector)
			switch {
			case err != nil || pt.selector == nil || sel.Empty():
				msgs = append(msgs, fmt.Sprintf("%s %s has no usable selector (%v)", pt.kind, pt.name, err))
			case !sel.Matches(labels.Set(pt.template.Labels)):
				msgs = append(msgs, fmt.Sprintf("%s %s selector %s does not match its pod labels %v", pt.kind, pt.name, sel, pt.template.Labels))
			}
		}
		spec := &pt.template.Spec
		if sa := spec.ServiceAccountName; sa != "" && sa != "default" {
			if _, ok := m.serviceAccounts[sa]; !ok {
				msgs = append(msgs, fmt.Sprintf("%s %s runs as ServiceAccount %s, which is not in the rendering", pt.kind, pt.name, sa))
			}
		}
		for _, v := range spec.Volumes {
			switch {
			case v.ConfigMap != nil && !ptrTrue(v.ConfigMap.Optional):
				cm, ok := m.configMaps[v.ConfigMap.Name]
				if !ok && !slices.Contains(external, v.ConfigMap.Name) {
					msgs = append(msgs, fmt.Sprintf("%s %s mounts ConfigMap %s, which is not in the rendering", pt.kind, pt.name, v.ConfigMap.Name))
				}
				for _, item := range v.ConfigMap.Items {
					if _, has := cm.Data[item.Key]; ok && !has {
						msgs = append(msgs, fmt.Sprintf("%s %s mounts key %s of ConfigMap %s, which has no such key", pt.kind, pt.name, item.Key, v.ConfigMap.Name))
					}
				}
			case v.Secret != nil && !ptrTrue(v.Secret.Optional):
				if _, ok := m.secrets[v.Secret.SecretName]; !ok && !slices.Contains(externalSecrets, v.Secret.SecretName) {
					msgs = append(msgs, fmt.Sprintf("%s %s mounts Secret %s, which is not in the rendering", pt.kind, pt.name, v.Secret.SecretName))
				}
			}
		}
		containers := slices.Concat(spec.InitContainers, spec.Containers)
		for i := range containers {
			c := &containers[i]
			if c.Image == "" {
				msgs = append(msgs, fmt.Sprintf("%s %s container %s has no image", pt.kind, pt.name, c.Name))
			}
			_, problems := containerEnv(m, c)
			for _, p := range problems {
				msgs = append(msgs, fmt.Sprintf("%s %s container %s: %s", pt.kind, pt.name, c.Name, p))
			}
			for _, vm := range c.VolumeMounts {
				declared := slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == vm.Name })
				if !declared && !slices.Contains(pt.claims, vm.Name) {
					msgs = append(msgs, fmt.Sprintf("%s %s container %s mounts volume %s, which the pod does not declare", pt.kind, pt.name, c.Name, vm.Name))
				}
			}
		}
	}
	for _, s := range m.services {
		pt, ok := m.selectedPods(s.Spec.Selector)
		if !ok {
			msgs = append(msgs, fmt.Sprintf("Service %s selects no workload's pods (selector %v)", s.Name, s.Spec.Selector))
			continue
		}
		for _, p := range s.Spec.Ports {
			if _, err := containerPort(&pt.template.Spec, p.TargetPort); err != nil {
				msgs = append(msgs, fmt.Sprintf("Service %s port %d: %v in %s %s", s.Name, p.Port, err, pt.kind, pt.name))
			}
		}
	}
	return msgs
}

// selectedPods returns the workload whose pod template a Service selector
// matches.
func (m *manifest) selectedPods(selector map[string]string) (podTemplate, bool) {
	if len(selector) == 0 {
		return podTemplate{}, false
	}
	for _, pt := range m.podTemplates() {
		if labels.SelectorFromSet(selector).Matches(labels.Set(pt.template.Labels)) {
			return pt, true
		}
	}
	return podTemplate{}, false
}

// containerPort resolves a port (a number, or the name of a container port)
// against a pod spec.
func containerPort(spec *corev1.PodSpec, port intstr.IntOrString) (int32, error) {
	for _, c := range spec.Containers {
		for _, p := range c.Ports {
			if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
				return p.ContainerPort, nil
			}
		}
	}
	return 0, fmt.Errorf("no container port %s", port.String())
}

// serveGrace returns how long the command in dir drains in-flight requests
// after SIGTERM: the last argument of its web.Serve call, written as
// N*time.Second or N*time.Millisecond.
func serveGrace(dir string) (time.Duration, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, filepath.Join(repoRoot, dir, "main.go"), nil, parser.SkipObjectResolution)
	if err != nil {
		return 0, err
	}
	var grace time.Duration
	var errs []string
	ast.Inspect(f, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok {
			return true
		}
		if pkg, ok := sel.X.(*ast.Ident); !ok || pkg.Name != "web" {
			return true
		}
		// web.ListenAndServe shuts down within web.ShutdownGrace.
		if sel.Sel.Name == "ListenAndServe" {
			grace = max(grace, web.ShutdownGrace)
			return true
		}
		if sel.Sel.Name != "Serve" || len(call.Args) != 4 {
			return true
		}
		d, err := durationLiteral(call.Args[3])
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", fset.Position(call.Args[3].Pos()), err))
			return true
		}
		grace = max(grace, d)
		return true
	})
	if len(errs) > 0 {
		return 0, fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	if grace == 0 {
		return 0, fmt.Errorf("%s/main.go calls neither web.ListenAndServe nor web.Serve(ctx, srv, log, grace)", dir)
	}
	return grace, nil
}

// durationLiteral evaluates N*time.Second or N*time.Millisecond.
func durationLiteral(e ast.Expr) (time.Duration, error) {
	b, ok := e.(*ast.BinaryExpr)
	if !ok || b.Op != token.MUL {
		return 0, fmt.Errorf("grace is not N*time.Unit")
	}
	lit, ok := b.X.(*ast.BasicLit)
	unit, uok := b.Y.(*ast.SelectorExpr)
	if !ok || !uok || lit.Kind != token.INT {
		return 0, fmt.Errorf("grace is not N*time.Unit")
	}
	n, err := strconv.Atoi(lit.Value)
	if err != nil {
		return 0, err
	}
	switch unit.Sel.Name {
	case "Second":
		return time.Duration(n) * time.Second, nil
	case "Millisecond":
		return time.Duration(n) * time.Millisecond, nil
	}
	return 0, fmt.Errorf("grace unit %s is not Second or Millisecond", unit.Sel.Name)
}

func TestServeGrace(t *testing.T) {
	t.Parallel()
	for _, svc := range appServices() {
		g, err := serveGrace(svc.dir)
		if err != nil || g <= 0 {
			t.Errorf("serveGrace(%s) = %v, %v; want a positive grace", svc.dir, g, err)
		}
	}
}

func TestKubernetes_Deployments(t *testing.T) {
	t.Parallel()
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			for _, svc := range appServices() {
				t.Run(svc.name, func(t *testing.T) {
					d, c, err := appContainer(m, svc.name)
					if err != nil {
						t.Fatal(err)
					}
					spec := &d.Spec.Template.Spec
					port := int32(svc.port)

					if want := "orderflow/" + svc.name + ":"; !strings.Contains(c.Image, want) {
						t.Errorf("image %s; want one built for %s (…%s<tag>)", c.Image, svc.name, want)
					}
					if got, err := containerPort(spec, intstr.FromString("http")); err != nil || got != port {
						t.Errorf("container port http = %d, %v; want %d", got, err, port)
					}

					checkProbe := func(kind string, p *corev1.Probe, path string) {
						t.Helper()
						if p == nil || p.HTTPGet == nil {
							t.Errorf("%s probe is not an HTTP GET", kind)
							return
						}
						got, err := containerPort(spec, p.HTTPGet.Port)
						if p.HTTPGet.Path != path || err != nil || got != port {
							t.Errorf("%s probe GET %s on port %d (%v); want GET %s on %d", kind, p.HTTPGet.Path, got, err, path, port)
						}
					}
					checkProbe("readiness", c.ReadinessProbe, "/readyz")
					checkProbe("liveness", c.LivenessProbe, "/healthz")
					checkProbe("startup", c.StartupProbe, "/healthz")

					for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
						req, rok := c.Resources.Requests[r]
						lim, lok := c.Resources.Limits[r]
						if !rok || !lok || req.IsZero() || req.Cmp(lim) > 0 {
							t.Errorf("%s request %v, limit %v; want both set, request <= limit", r, req.String(), lim.String())
						}
					}

					psc, sc := spec.SecurityContext, c.SecurityContext
					if psc == nil || !ptrTrue(psc.RunAsNonRoot) || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
						t.Errorf("pod securityContext %+v; want runAsNonRoot and a non-zero runAsUser", psc)
					}
					if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
						!ptrTrue(sc.ReadOnlyRootFilesystem) || ptrTrue(sc.Privileged) ||
						sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
						t.Errorf("container securityContext %+v; want no privilege escalation, a read-only root filesystem, all capabilities dropped", sc)
					}

					// SIGTERM comes after the preStop sleep; the kubelet
					// kills the process at terminationGracePeriodSeconds
					// counted from the start of preStop, so both must fit.
					grace, err := serveGrace(svc.dir)
					if err != nil {
						t.Fatal(err)
					}
					var sleep time.Duration
					if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil || c.Lifecycle.PreStop.Sleep.Seconds <= 0 {
						t.Error("no preStop sleep: the pod would get SIGTERM while endpoints still route to it")
					} else {
						sleep = time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
					}
					if spec.TerminationGracePeriodSeconds == nil {
						t.Error("terminationGracePeriodSeconds is not set")
					} else if tg := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second; tg <= sleep+grace {
						t.Errorf("terminationGracePeriodSeconds %v <= preStop sleep %v + shutdown grace %v in %s/main.go", tg, sleep, grace, svc.dir)
					}
				})
			}
		})
	}
}

func TestKubernetes_Environment(t *testing.T) {
	t.Parallel()
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			for _, svc := range appServices() {
				t.Run(svc.name, func(t *testing.T) {
					reads, err := envReadsInDir(svc.dir)
					if err != nil {
						t.Fatal(err)
					}
					if n := len(unique(reads)); n < 3 {
						t.Fatalf("found only %d variables read by %s; the parser no longer understands its config code", n, svc.dir)
					}
					var wanted []envRead
					for _, r := range reads {
						if _, ok := k.unset[r.name]; !ok {
							wanted = append(wanted, r)
						}
					}
					for _, msg := range missingKubeEnv(m, svc.name, wanted) {
						t.Error(msg)
					}

					_, c, err := appContainer(m, svc.name)
					if err != nil {
						t.Fatal(err)
					}
					vals, _ := containerEnv(m, c)
					names := unique(reads)
					for name, why := range k.unset {
						if _, set := vals[name]; set && slices.Contains(names, name) {
							t.Errorf("Deployment %s sets %s, which this kustomization leaves unset on purpose (%s)", svc.name, name, why)
						}
					}
					// The reverse: a service's own variable that its code does
					// not read is a typo or a leftover, and so is one that no
					// process reads at all (ADMIN_TOKEN, gone with the access
					// tokens). Shared ConfigMaps may hand a process a variable
					// only the others read (SHUTDOWN_DRAIN to the provider).
					anyone := readByAnyProcess(t)
					for name := range vals {
						if strings.HasPrefix(name, envPrefix(svc.name)) && !slices.Contains(names, name) {
							t.Errorf("Deployment %s sets %s, which %s does not read", svc.name, name, svc.dir)
						}
						if _, runtime := runtimeVars()[name]; !anyone[name] && !runtime {
							t.Errorf("Deployment %s sets %s, which no Orderflow process reads", svc.name, name)
						}
					}
					if addr, want := vals[envPrefix(svc.name)+"ADDR"], fmt.Sprintf(":%d", svc.port); addr != want {
						t.Errorf("%sADDR = %q; want %q, the container port", envPrefix(svc.name), addr, want)
					}
				})
			}
		})
	}
}

// endpointHost returns the host and port a configuration value points at:
// a URL with a host, or host:port for variables named *_ADDR.
func endpointHost(name, value string) (host string, port int, ok bool) {
	if u, err := url.Parse(value); err == nil && u.Host != "" {
		host = u.Hostname()
		p := u.Port()
		if p == "" {
			return "", 0, false
		}
		port, err := strconv.Atoi(p)
		return host, port, err == nil
	}
	if strings.HasSuffix(name, "_ADDR") {
		h, p, err := net.SplitHostPort(value)
		if err != nil || h == "" {
			return "", 0, false
		}
		port, err := strconv.Atoi(p)
		return h, port, err == nil
	}
	return "", 0, false
}

// TestKubernetes_Endpoints checks that the variables pointing a process at
// another one (ORDER_INVENTORY_URL, PAYMENT_PROVIDER_URL) or at an
// in-cluster component (postgres, redis, SMTP) name a Service and one of its
// ports.
func TestKubernetes_Endpoints(t *testing.T) {
	t.Parallel()
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			checked := 0
			for _, svc := range appServices() {
				_, c, err := appContainer(m, svc.name)
				if err != nil {
					t.Fatal(err)
				}
				vals, _ := containerEnv(m, c)
				for name, value := range vals {
					host, port, ok := endpointHost(name, value)
					// Bare names and name.namespace are cluster DNS; names
					// with more dots are outside the cluster.
					if !ok || strings.Count(host, ".") > 1 || net.ParseIP(host) != nil {
						continue
					}
					host, _, _ = strings.Cut(host, ".")
					isApp := slices.ContainsFunc(appServices(), func(a appService) bool { return a.name == host })
					s, found := m.services[host]
					if !found {
						if isApp || k.inCluster {
							t.Errorf("Deployment %s: %s=%s names Service %s, which is not in the rendering", svc.name, name, value, host)
						}
						continue
					}
					checked++
					if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return int(p.Port) == port }) {
						t.Errorf("Deployment %s: %s=%s, but Service %s has no port %d", svc.name, name, value, host, port)
					}
				}
			}
			if checked == 0 {
				t.Error("no variable points at a Service; the check has nothing to check")
			}
		})
	}
}

func TestKubernetes_ServicePorts(t *testing.T) {
	t.Parallel()
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			for _, svc := range appServices() {
				s, ok := m.services[svc.name]
				if !ok {
					t.Errorf("no Service %s", svc.name)
					continue
				}
				if s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP {
					t.Errorf("Service %s type %s; want ClusterIP", svc.name, s.Spec.Type)
				}
				d, _, err := appContainer(m, svc.name)
				if err != nil {
					t.Fatal(err)
				}
				if !labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) || len(s.Spec.Selector) == 0 {
					t.Errorf("Service %s selector %v does not select Deployment %s's pods", svc.name, s.Spec.Selector, svc.name)
				}
				var got []string
				for _, p := range s.Spec.Ports {
					target, err := containerPort(&d.Spec.Template.Spec, p.TargetPort)
					if err != nil {
						t.Errorf("Service %s port %d: %v", svc.name, p.Port, err)
					}
					got = append(got, fmt.Sprintf("%d->%d", p.Port, target))
				}
				want := []string{fmt.Sprintf("%d->%d", svc.port, svc.port)}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Service %s ports (-want +got):\n%s", svc.name, diff)
				}
			}
		})
	}
}

// replicas returns the fewest replicas a Deployment runs: its autoscaler's
// minimum if it has one, else spec.replicas (1 when unset).
func (m *manifest) replicas(d *appsv1.Deployment) int32 {
	for _, h := range m.hpas {
		if h.Spec.ScaleTargetRef.Kind == "Deployment" && h.Spec.ScaleTargetRef.Name == d.Name && h.Spec.MinReplicas != nil {
			return *h.Spec.MinReplicas
		}
	}
	if d.Spec.Replicas != nil {
		return *d.Spec.Replicas
	}
	return 1
}

func TestKubernetes_Scaling(t *testing.T) {
	t.Parallel()
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			for _, h := range m.hpas {
				ref := h.Spec.ScaleTargetRef
				d, ok := m.deployments[ref.Name]
				if ref.APIVersion != "apps/v1" || ref.Kind != "Deployment" || !ok {
					t.Errorf("HorizontalPodAutoscaler %s targets %s %s %s, which is not a Deployment in the rendering", h.Name, ref.APIVersion, ref.Kind, ref.Name)
					continue
				}
				if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas < 1 || *h.Spec.MinReplicas > h.Spec.MaxReplicas {
					t.Errorf("HorizontalPodAutoscaler %s replicas %v..%d; want 1 <= min <= max", h.Name, h.Spec.MinReplicas, h.Spec.MaxReplicas)
				}
				cpu := false
				for _, mt := range h.Spec.Metrics {
					if mt.Type == autoscalingv2.ResourceMetricSourceType && mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU &&
						mt.Resource.Target.Type == autoscalingv2.UtilizationMetricType && mt.Resource.Target.AverageUtilization != nil {
						cpu = true
					}
				}
				if !cpu {
					t.Errorf("HorizontalPodAutoscaler %s does not scale on CPU utilization", h.Name)
				}
				// Utilization is a share of the request: without one the
				// autoscaler has nothing to divide by.
				for _, c := range d.Spec.Template.Spec.Containers {
					if _, ok := c.Resources.Requests[corev1.ResourceCPU]; !ok {
						t.Errorf("HorizontalPodAutoscaler %s: container %s of Deployment %s requests no CPU", h.Name, c.Name, d.Name)
					}
				}
			}

			covered := map[string]bool{}
			for _, p := range m.pdbs {
				if (p.Spec.MinAvailable == nil) == (p.Spec.MaxUnavailable == nil) {
					t.Errorf("PodDisruptionBudget %s sets %s; want exactly one of minAvailable and maxUnavailable", p.Name,
						map[bool]string{true: "neither", false: "both"}[p.Spec.MinAvailable == nil])
				}
				sel, err := metav1.LabelSelectorAsSelector(p.Spec.Selector)
				if err != nil || sel.Empty() {
					t.Errorf("PodDisruptionBudget %s has no usable selector (%v)", p.Name, err)
					continue
				}
				var matched []string
				for _, d := range m.deployments {
					if !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
						continue
					}
					matched = append(matched, d.Name)
					covered[d.Name] = true
					// A budget that needs every replica up blocks every
					// node drain.
					if p.Spec.MinAvailable != nil && p.Spec.MinAvailable.Type == intstr.Int && p.Spec.MinAvailable.IntVal >= m.replicas(d) {
						t.Errorf("PodDisruptionBudget %s: minAvailable %d with %d replicas of %s blocks every eviction", p.Name, p.Spec.MinAvailable.IntVal, m.replicas(d), d.Name)
					}
				}
				if len(matched) != 1 {
					t.Errorf("PodDisruptionBudget %s selects the pods of Deployments %v; want exactly one", p.Name, matched)
				}
			}
			for _, svc := range appServices() {
				if !covered[svc.name] {
					t.Errorf("no PodDisruptionBudget covers Deployment %s", svc.name)
				}
			}
			for _, name := range []string{"hydra", "gateway"} {
				if !covered[name] {
					t.Errorf("no PodDisruptionBudget covers Deployment %s", name)
				}
			}
		})
	}
}

// TestKubernetes_AWS checks the managed-services configuration: SQS through
// IRSA with no static keys or endpoint (the variables themselves are
// checked absent by TestKubernetes_Environment), RDS over verified TLS with
// the CA bundle mounted, ElastiCache over TLS, images from a registry.
func TestKubernetes_AWS(t *testing.T) {
	t.Parallel()
	i := slices.IndexFunc(kustomizations(), func(k kustomization) bool { return strings.HasSuffix(k.dir, "/aws") })
	if i < 0 {
		t.Fatal("kustomizations() lists no aws overlay")
	}
	k := kustomizations()[i]
	m := render(t, k)
	if _, ok := m.secrets["sqs-credentials"]; ok {
		t.Error("the aws overlay still renders Secret sqs-credentials (static SQS keys)")
	}
	for _, svc := range appServices() {
		t.Run(svc.name, func(t *testing.T) {
			d, c, err := appContainer(m, svc.name)
			if err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(c.Image, "orderflow/") || strings.HasSuffix(c.Image, ":latest") {
				t.Errorf("image %s; want a pinned tag from a registry", c.Image)
			}
			reads, err := envReadsInDir(svc.dir)
			if err != nil {
				t.Fatal(err)
			}
			names := unique(reads)
			vals, _ := containerEnv(m, c)

			if slices.Contains(names, "AWS_REGION") {
				sa := m.serviceAccounts[d.Spec.Template.Spec.ServiceAccountName]
				if sa == nil || !strings.HasPrefix(sa.Annotations["eks.amazonaws.com/role-arn"], "arn:aws:iam::") {
					t.Errorf("Deployment %s reads SQS settings but its ServiceAccount has no eks.amazonaws.com/role-arn annotation", svc.name)
				}
				if vals["AWS_REGION"] == "" {
					t.Error("AWS_REGION is not set")
				}
			}

			for _, name := range names {
				v := vals[name]
				switch {
				case strings.HasSuffix(name, "_DATABASE_URL"):
					u, err := url.Parse(v)
					if err != nil {
						t.Errorf("%s: %v", name, err)
						continue
					}
					q := u.Query()
					if q.Get("sslmode") != "verify-full" {
						t.Errorf("%s sslmode=%q; want verify-full", name, q.Get("sslmode"))
					}
					if root := q.Get("sslrootcert"); !mounted(c, root) {
						t.Errorf("%s sslrootcert=%q is not a file under a volume mount of the container", name, root)
					}
				case strings.HasSuffix(name, "_REDIS_URL"):
					if !strings.HasPrefix(v, "rediss://") {
						t.Errorf("%s=%s; want rediss:// (ElastiCache in-transit encryption)", name, v)
					}
				}
			}
		})
	}
}

// mounted reports whether path lies under one of c's volume mounts.
func mounted(c *corev1.Container, path string) bool {
	if path == "" {
		return false
	}
	return slices.ContainsFunc(c.VolumeMounts, func(vm corev1.VolumeMount) bool {
		return strings.HasPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
	})
}

// TestMissingKubeEnv proves the Kubernetes environment check can fail: a
// tiny service and a tiny manifest that leaves some of its variables out or
// points at keys that do not exist.
func TestMissingKubeEnv(t *testing.T) {
	t.Parallel()
	const src = `package main

import "github.com/orderflow/orderflow/pkg/env"

func readConfig(getenv func(string) string) {
	r := env.New(getenv)
	_ = r.String("SHOP_ADDR", ":9000")
	_ = r.Duration("SHOP_CALL_TIMEOUT", 0)
	_ = r.Required("SHOP_DATABASE_URL")
	_ = r.String("ADMIN_TOKEN", "")
	_ = r.Int("SHOP_DB_MAX_CONNS", 1)
}
`
	reads, err := envReadsInFile(token.NewFileSet(), "services/shop/main.go", src)
	if err != nil {
		t.Fatal(err)
	}
	const common = `
apiVersion: v1
kind: ConfigMap
metadata:
  name: shop-config
data:
  SHOP_ADDR: ":9000"
  SHOP_CALL_TIMEOUT: 5s
---
apiVersion: v1
kind: Secret
metadata:
  name: shop-secrets
stringData:
  SHOP_DATABASE_URL: postgres://db/shop
  ADMIN_TOKEN: secret
`
	deployment := func(envFrom, env string) string {
		return common + `---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: shop
spec:
  selector:
    matchLabels: {app: shop}
  template:
    metadata:
      labels: {app: shop}
    spec:
      containers:
        - name: shop
          image: shop
          envFrom:` + envFrom + `
          env:` + env + "\n"
	}
	tests := []struct {
		name, manifest string
		want           []string
	}{
		{
			name: "all set",
			manifest: deployment(`
            - configMapRef: {name: shop-config}
            - secretRef: {name: shop-secrets}`, `
            - name: SHOP_DB_MAX_CONNS
              value: "20"`),
		},
		{
			name: "one missing",
			manifest: deployment(`
            - configMapRef: {name: shop-config}
            - secretRef: {name: shop-secrets}`, ` []`),
			want: []string{"Deployment shop does not set SHOP_DB_MAX_CONNS (read by services/shop/main.go)"},
		},
		{
			name: "secret missing, empty value, bad key",
			manifest: deployment(`
            - configMapRef: {name: shop-config}
            - secretRef: {name: other-secrets}`, `
            - name: SHOP_CALL_TIMEOUT
              value: ""
            - name: SHOP_DB_MAX_CONNS
              valueFrom:
                configMapKeyRef: {name: shop-config, key: SHOP_MAX_CONNS}`),
			want: []string{
				"Deployment shop: envFrom names Secret other-secrets, which is not in the rendering",
				"Deployment shop: SHOP_DB_MAX_CONNS comes from key SHOP_MAX_CONNS of ConfigMap shop-config, which is not in the rendering",
				"Deployment shop sets SHOP_CALL_TIMEOUT to an empty value (read by services/shop/main.go)",
				"Deployment shop does not set SHOP_DATABASE_URL (read by services/shop/main.go)",
				"Deployment shop does not set ADMIN_TOKEN (read by services/shop/main.go)",
				"Deployment shop does not set SHOP_DB_MAX_CONNS (read by services/shop/main.go)",
			},
		},
		{
			name: "optional secret absent",
			manifest: deployment(`
            - configMapRef: {name: shop-config}
            - secretRef: {name: shop-secrets}
            - secretRef: {name: cloud-keys, optional: true}`, `
            - name: SHOP_DB_MAX_CONNS
              valueFrom:
                secretKeyRef: {name: cloud-keys, key: MAX, optional: true}`),
			want: []string{"Deployment shop does not set SHOP_DB_MAX_CONNS (read by services/shop/main.go)"},
		},
		{
			name:     "no such deployment",
			manifest: common,
			want:     []string{"no Deployment shop"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := decodeManifest(splitYAML(tt.manifest))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, missingKubeEnv(m, "shop", reads)); diff != "" {
				t.Errorf("missingKubeEnv (-want +got):\n%s", diff)
			}
		})
	}
}

// splitYAML splits a multi-document YAML string at its --- lines.
func splitYAML(s string) [][]byte {
	var docs [][]byte
	for _, d := range strings.Split(s, "\n---\n") {
		if strings.TrimSpace(d) != "" {
			docs = append(docs, []byte(d))
		}
	}
	return docs
}

// TestDecodeManifest_Strict proves the schema check can fail.
func TestDecodeManifest_Strict(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, doc, want string
	}{
		{
			name: "misspelt field",
			doc: `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  template:
    spec:
      containers:
        - name: shop
          image: shop
          readinesProbe: {httpGet: {path: /readyz, port: 8080}}
`,
			want: `unknown field "readinesProbe"`,
		},
		{
			name: "wrong type",
			doc: `apiVersion: v1
kind: Service
metadata: {name: shop}
spec:
  ports: [{port: "eighty"}]
`,
			want: "cannot unmarshal string",
		},
		{
			name: "field of another version",
			doc: `apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata: {name: shop}
spec:
  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: shop}
  maxReplicas: 3
  targetCPUUtilizationPercentage: 70
`,
			want: `unknown field "targetCPUUtilizationPercentage"`,
		},
		{
			name: "unknown kind",
			doc:  "apiVersion: apps/v1beta1\nkind: Deployment\nmetadata: {name: shop}\n",
			want: `no schema for apiVersion "apps/v1beta1" kind "Deployment"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := decodeManifest([][]byte{[]byte(tt.doc)})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("decodeManifest error = %v; want one containing %q", err, tt.want)
			}
		})
	}
}

// TestKubernetes_NoStrayFiles catches a manifest written but never listed
// in a kustomization, which would silently not be deployed.
func TestKubernetes_NoStrayFiles(t *testing.T) {
	t.Parallel()
	for _, k := range kustomizations() {
		content, err := os.ReadFile(filepath.Join(repoRoot, k.dir, "kustomization.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		var kz struct {
			Resources []string `json:"resources"`
			Patches   []struct {
				Path string `json:"path"`
			} `json:"patches"`
		}
		if err := yaml.Unmarshal(content, &kz); err != nil {
			t.Fatalf("%s/kustomization.yaml: %v", k.dir, err)
		}
		listed := slices.Clone(kz.Resources)
		for _, p := range kz.Patches {
			listed = append(listed, p.Path)
		}
		files, err := filepath.Glob(filepath.Join(repoRoot, k.dir, "*.yaml"))
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if name := filepath.Base(f); name != "kustomization.yaml" && !slices.Contains(listed, name) {
				t.Errorf("%s/%s is neither a resource nor a patch of its kustomization.yaml", k.dir, name)
			}
		}
	}
}

// anyProcessReads caches the variables any Orderflow process reads.
var anyProcessReads = sync.OnceValues(func() (map[string]bool, error) {
	names := map[string]bool{}
	for _, svc := range appServices() {
		reads, err := envReadsInDir(svc.dir)
		if err != nil {
			return nil, err
		}
		for _, r := range reads {
			names[r.name] = true
		}
	}
	return names, nil
})

// readByAnyProcess returns the variables any Orderflow process reads.
func readByAnyProcess(t *testing.T) map[string]bool {
	t.Helper()
	names, err := anyProcessReads()
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// generated returns the object kustomize generated from base name: the one
// named base-<hash>, or base itself.
func generated[T any](objs map[string]*T, base string) (*T, bool) {
	if o, ok := objs[base]; ok {
		return o, true
	}
	for name, o := range objs {
		if rest, ok := strings.CutPrefix(name, base+"-"); ok && len(rest) == 10 && !strings.Contains(rest, "-") {
			return o, true
		}
	}
	return nil, false
}

// container returns the container (or init container) named name of a
// pod spec.
func container(spec *corev1.PodSpec, name string) (*corev1.Container, bool) {
	for _, cs := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for i := range cs {
			if cs[i].Name == name {
				return &cs[i], true
			}
		}
	}
	return nil, false
}

// orderflowDeployments returns the Deployments of the orderflow labels:
// the six processes, Hydra and the gateway, not the local components.
func orderflowDeployments(m *manifest) []*appsv1.Deployment {
	var ds []*appsv1.Deployment
	for _, d := range m.deployments {
		if d.Labels["app.kubernetes.io/part-of"] == "orderflow" {
			ds = append(ds, d)
		}
	}
	slices.SortFunc(ds, func(a, b *appsv1.Deployment) int { return strings.Compare(a.Name, b.Name) })
	return ds
}

// TestKubernetes_Hardening applies the processes' rules to every container
// and init container of every Orderflow Deployment, Hydra's and the
// gateway's included: non-root, no privilege escalation, a read-only root
// filesystem, no capabilities, CPU and memory requested and limited, images
// pinned.
func TestKubernetes_Hardening(t *testing.T) {
	t.Parallel()
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			ds := orderflowDeployments(m)
			if len(ds) < len(appServices())+2 {
				t.Fatalf("found %d Orderflow Deployments; want the processes, hydra and gateway", len(ds))
			}
			for _, d := range ds {
				spec := &d.Spec.Template.Spec
				psc := spec.SecurityContext
				if psc == nil || !ptrTrue(psc.RunAsNonRoot) || psc.RunAsUser == nil || *psc.RunAsUser == 0 ||
					psc.SeccompProfile == nil || psc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
					t.Errorf("Deployment %s pod securityContext %+v; want runAsNonRoot, a non-zero runAsUser and the RuntimeDefault seccomp profile", d.Name, psc)
				}
				for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
					sc := c.SecurityContext
					if sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
						!ptrTrue(sc.ReadOnlyRootFilesystem) || ptrTrue(sc.Privileged) ||
						sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") || len(sc.Capabilities.Add) > 0 {
						t.Errorf("Deployment %s container %s securityContext %+v; want no privilege escalation, a read-only root filesystem, all capabilities dropped", d.Name, c.Name, sc)
					}
					for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
						req, rok := c.Resources.Requests[r]
						lim, lok := c.Resources.Limits[r]
						if !rok || !lok || req.IsZero() || req.Cmp(lim) > 0 {
							t.Errorf("Deployment %s container %s %s request %v, limit %v; want both set, request <= limit", d.Name, c.Name, r, req.String(), lim.String())
						}
					}
					if !strings.Contains(c.Image, ":") || strings.HasSuffix(c.Image, ":latest") && !strings.HasPrefix(c.Image, "orderflow/") {
						t.Errorf("Deployment %s container %s image %s; want a pinned tag", d.Name, c.Name, c.Image)
					}
				}
			}
		})
	}
}

// placeholder is the value the repository's Secrets ship with for every
// secret an operator must choose.
const placeholder = "CHANGE_ME"

// operatorSecrets are the Secret keys that have no usable default: each
// ships as the placeholder in every rendering.
func operatorSecrets() []string {
	return []string{"ADMIN_CLIENT_SECRET", "ORDER_CLIENT_SECRET", "PROVIDER_API_KEY", "IDENTITY_CSRF_KEY", "SECRETS_SYSTEM"}
}

// TestKubernetes_Placeholders checks the secrets rule on Kubernetes: the
// secrets an operator must choose ship as CHANGE_ME, and a pod whose
// environment holds a placeholder anywhere runs a refuse-placeholders init
// container first that sees it, and refuses. The init container's script
// is run here, with sh, on the environment the kubelet would give it: once
// as rendered (it must fail and name the variables), once with every
// placeholder replaced (it must pass).
func TestKubernetes_Placeholders(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Fatal("sh is not installed; install Debian's dash package: sudo apt-get install dash")
	}
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			for _, key := range operatorSecrets() {
				found := 0
				for _, s := range m.secrets {
					v, ok := s.Data[key]
					if sv, sok := s.StringData[key]; sok {
						v, ok = []byte(sv), true
					}
					if !ok {
						continue
					}
					found++
					if string(v) != placeholder {
						t.Errorf("Secret %s ships %s with a value; want the placeholder %s, so no default secret is ever accepted", s.Name, key, placeholder)
					}
				}
				if found == 0 {
					t.Errorf("no Secret holds %s", key)
				}
			}

			guarded := 0
			for _, d := range orderflowDeployments(m) {
				spec := &d.Spec.Template.Spec
				held := map[string]string{}
				for _, c := range slices.Concat(spec.InitContainers, spec.Containers) {
					vals, _ := containerEnv(m, &c)
					for name, v := range vals {
						if strings.Contains(v, placeholder) {
							held[name] = v
						}
					}
				}
				if len(held) == 0 {
					continue
				}
				guarded++
				if len(spec.InitContainers) == 0 || spec.InitContainers[0].Name != "refuse-placeholders" {
					t.Errorf("Deployment %s uses placeholders %v but its first init container is not refuse-placeholders", d.Name, slices.Sorted(maps.Keys(held)))
					continue
				}
				check := &spec.InitContainers[0]
				vals, _ := containerEnv(m, check)
				for name, v := range held {
					if vals[name] != v {
						t.Errorf("Deployment %s: refuse-placeholders does not see %s, which holds a placeholder", d.Name, name)
					}
				}
				out, err := runCheck(t, check.Command, vals)
				if err == nil {
					t.Errorf("Deployment %s: refuse-placeholders passes with %v still holding %s:\n%s", d.Name, slices.Sorted(maps.Keys(held)), placeholder, out)
				}
				for name := range held {
					if !strings.Contains(out, name) {
						t.Errorf("Deployment %s: refuse-placeholders does not name %s:\n%s", d.Name, name, out)
					}
				}
				for name, v := range vals {
					vals[name] = strings.ReplaceAll(v, placeholder, "c0ffee-0123456789abcdef0123456789abcdef")
				}
				if out, err := runCheck(t, check.Command, vals); err != nil {
					t.Errorf("Deployment %s: refuse-placeholders fails with every placeholder replaced: %v\n%s", d.Name, err, out)
				}
			}
			if guarded == 0 {
				t.Error("no Deployment uses a placeholder; the check has nothing to check")
			}
		})
	}
}

// runCheck runs an init container's command on this machine with env as
// its whole environment (and PATH).
func runCheck(t *testing.T, command []string, env map[string]string) (string, error) {
	t.Helper()
	if len(command) == 0 {
		return "", fmt.Errorf("no command")
	}
	cmd := exec.CommandContext(t.Context(), command[0], command[1:]...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for name, v := range env {
		cmd.Env = append(cmd.Env, name+"="+v)
	}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestKubernetes_FilesMatchSources keeps the copies kustomize needs (it
// reads nothing outside a kustomization's directory) identical to their
// originals: the rendered ConfigMaps hold exactly deploy/hydra/hydra.yml,
// deploy/gateway/haproxy.cfg, deploy/hydra/register-clients.sh and every
// deploy/hydra/clients/*.json.
func TestKubernetes_FilesMatchSources(t *testing.T) {
	t.Parallel()
	read := func(rel string) string {
		b, err := os.ReadFile(filepath.Join(repoRoot, rel))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	want := map[string]map[string]string{
		"hydra-files":   {"hydra.yml": read("deploy/hydra/hydra.yml")},
		"gateway-files": {"haproxy.cfg": read("deploy/gateway/haproxy.cfg")},
		"hydra-clients": {"register-clients.sh": read("deploy/hydra/register-clients.sh")},
	}
	clients, err := filepath.Glob(filepath.Join(repoRoot, "deploy/hydra/clients/*.json"))
	if err != nil || len(clients) == 0 {
		t.Fatalf("deploy/hydra/clients holds no client files (%v)", err)
	}
	for _, f := range clients {
		want["hydra-clients"][filepath.Base(f)] = read("deploy/hydra/clients/" + filepath.Base(f))
	}
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			for name, files := range want {
				cm, ok := generated(m.configMaps, name)
				if !ok {
					t.Errorf("no ConfigMap %s", name)
					continue
				}
				if diff := cmp.Diff(files, cm.Data); diff != "" {
					t.Errorf("ConfigMap %s differs from the repository's files (copy them into deploy/kubernetes/base again) (-want +got):\n%s", name, diff)
				}
			}
		})
	}
}

// TestKubernetes_Hydra checks the OpenID Connect provider: migrated by an
// init container with the same image and database, production mode behind
// an https issuer that every service is configured with, its keys read
// from its public Service, its admin API on a Service of its own that
// identity uses, the clients registered by identity's init container with
// the secrets order uses.
func TestKubernetes_Hydra(t *testing.T) {
	t.Parallel()
	const image = "oryd/hydra:v2.3.0"
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			d, ok := m.deployments["hydra"]
			if !ok {
				t.Fatal("no Deployment hydra")
			}
			spec := &d.Spec.Template.Spec
			h, ok := container(spec, "hydra")
			if !ok {
				t.Fatal("Deployment hydra has no container hydra")
			}
			mig, ok := container(spec, "migrate")
			if !ok || !slices.ContainsFunc(spec.InitContainers, func(c corev1.Container) bool { return c.Name == "migrate" }) {
				t.Fatal("Deployment hydra has no init container migrate")
			}
			if h.Image != image || mig.Image != image {
				t.Errorf("hydra image %s, migrate image %s; want %s", h.Image, mig.Image, image)
			}
			if diff := cmp.Diff([]string{"migrate", "sql", "up", "-e", "--yes"}, slices.Concat(mig.Command, mig.Args)); diff != "" {
				t.Errorf("migrate command (-want +got):\n%s", diff)
			}
			args := slices.Concat(h.Command, h.Args)
			if len(args) < 2 || args[0] != "serve" || args[1] != "all" || slices.Contains(args, "--dev") {
				t.Errorf("hydra runs %v; want serve all without --dev", args)
			}
			if i := slices.Index(args, "-c"); i < 0 || i+1 >= len(args) || !mountsConfigMapKey(m, spec, h, args[i+1], "hydra-files") {
				t.Errorf("hydra runs %v; want -c on a file of ConfigMap hydra-files", args)
			}
			env, problems := containerEnv(m, h)
			for _, p := range problems {
				t.Error(p)
			}
			migEnv, _ := containerEnv(m, mig)
			if u, err := url.Parse(env["DSN"]); err != nil || u.Path != "/hydra" {
				t.Errorf("hydra DSN %q; want Hydra's own database hydra", env["DSN"])
			}
			if migEnv["DSN"] != env["DSN"] {
				t.Error("migrate and hydra use different DSNs")
			}
			if env["SECRETS_SYSTEM"] == "" {
				t.Error("hydra has no SECRETS_SYSTEM")
			}
			for name, port := range map[string]string{"SERVE_PUBLIC_PORT": "public", "SERVE_ADMIN_PORT": "admin"} {
				got, err := containerPort(spec, intstr.FromString(port))
				if err != nil || env[name] != strconv.Itoa(int(got)) {
					t.Errorf("hydra %s = %q; want container port %s (%d, %v)", name, env[name], port, got, err)
				}
			}
			for _, name := range []string{"SERVE_PUBLIC_HOST", "SERVE_ADMIN_HOST"} {
				if env[name] != "0.0.0.0" {
					t.Errorf("hydra %s = %q; want 0.0.0.0 (hydra.yml binds loopback)", name, env[name])
				}
			}
			checkProbe := func(kind string, p *corev1.Probe, path string) {
				if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path {
					t.Errorf("hydra %s probe %+v; want GET %s", kind, p, path)
				}
			}
			checkProbe("readiness", h.ReadinessProbe, "/health/ready")
			checkProbe("liveness", h.LivenessProbe, "/health/alive")

			issuer := env["URLS_SELF_ISSUER"]
			if u, err := url.Parse(issuer); err != nil || u.Scheme != "https" || u.Path != "/" {
				t.Errorf("hydra URLS_SELF_ISSUER %q; want an https origin ending in /", issuer)
			}
			for name, path := range map[string]string{"URLS_LOGIN": "login", "URLS_CONSENT": "consent"} {
				if env[name] != issuer+path {
					t.Errorf("hydra %s = %q; want %q (identity behind the gateway)", name, env[name], issuer+path)
				}
			}

			// The Services: public and admin apart.
			servicePort := func(name string) (int32, int32) {
				s, ok := m.services[name]
				if !ok || len(s.Spec.Ports) != 1 {
					t.Errorf("no Service %s with one port", name)
					return 0, 0
				}
				target, err := containerPort(spec, s.Spec.Ports[0].TargetPort)
				if err != nil {
					t.Errorf("Service %s: %v", name, err)
				}
				return s.Spec.Ports[0].Port, target
			}
			publicPort, publicTarget := servicePort("hydra")
			adminPort, adminTarget := servicePort("hydra-admin")
			if strconv.Itoa(int(publicTarget)) != env["SERVE_PUBLIC_PORT"] || strconv.Itoa(int(adminTarget)) != env["SERVE_ADMIN_PORT"] {
				t.Errorf("Service hydra targets %d and hydra-admin %d; want the public and admin ports", publicTarget, adminTarget)
			}

			checked := 0
			for _, svc := range appServices() {
				reads, err := envReadsInDir(svc.dir)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Contains(unique(reads), "AUTH_ISSUER") {
					continue
				}
				checked++
				_, c, err := appContainer(m, svc.name)
				if err != nil {
					t.Fatal(err)
				}
				vals, _ := containerEnv(m, c)
				if vals["AUTH_ISSUER"] != issuer {
					t.Errorf("Deployment %s AUTH_ISSUER = %q; want Hydra's issuer %q", svc.name, vals["AUTH_ISSUER"], issuer)
				}
				if want := fmt.Sprintf("http://hydra:%d/.well-known/jwks.json", publicPort); vals["AUTH_JWKS_URL"] != want {
					t.Errorf("Deployment %s AUTH_JWKS_URL = %q; want %q", svc.name, vals["AUTH_JWKS_URL"], want)
				}
			}
			if checked < 4 {
				t.Errorf("found %d services that read AUTH_ISSUER; want 4 at least", checked)
			}

			// identity: the admin API, and the clients.
			id, ok := m.deployments["identity"]
			if !ok {
				t.Fatal("no Deployment identity")
			}
			_, ic, err := appContainer(m, "identity")
			if err != nil {
				t.Fatal(err)
			}
			ivals, _ := containerEnv(m, ic)
			if want := fmt.Sprintf("http://hydra-admin:%d", adminPort); ivals["IDENTITY_HYDRA_ADMIN_URL"] != want {
				t.Errorf("identity IDENTITY_HYDRA_ADMIN_URL = %q; want %q", ivals["IDENTITY_HYDRA_ADMIN_URL"], want)
			}
			reg, ok := container(&id.Spec.Template.Spec, "register-clients")
			if !ok {
				t.Fatal("Deployment identity has no init container register-clients")
			}
			rvals, _ := containerEnv(m, reg)
			if rvals["HYDRA_ADMIN_URL"] != ivals["IDENTITY_HYDRA_ADMIN_URL"] {
				t.Errorf("register-clients HYDRA_ADMIN_URL = %q; want identity's %q", rvals["HYDRA_ADMIN_URL"], ivals["IDENTITY_HYDRA_ADMIN_URL"])
			}
			cmd := slices.Concat(reg.Command, reg.Args)
			if len(cmd) == 0 || !strings.HasSuffix(cmd[len(cmd)-1], "/register-clients.sh") ||
				!mountsConfigMapKey(m, &id.Spec.Template.Spec, reg, cmd[len(cmd)-1], "hydra-clients") {
				t.Errorf("register-clients runs %v; want register-clients.sh from ConfigMap hydra-clients", cmd)
			}
			dir := ""
			if len(cmd) > 0 {
				dir = filepath.Dir(cmd[len(cmd)-1])
			}
			files, _ := filepath.Glob(filepath.Join(repoRoot, "deploy/hydra/clients/*.json"))
			_, oc, err := appContainer(m, "order")
			if err != nil {
				t.Fatal(err)
			}
			ovals, _ := containerEnv(m, oc)
			for _, f := range files {
				base := filepath.Base(f)
				if !mountsConfigMapKey(m, &id.Spec.Template.Spec, reg, dir+"/clients/"+base, "hydra-clients") {
					t.Errorf("register-clients does not see %s at %s/clients/%s", base, dir, base)
				}
				b, err := os.ReadFile(f)
				if err != nil {
					t.Fatal(err)
				}
				id := strings.TrimSuffix(base, ".json")
				if strings.Contains(string(b), "${SECRET}") && rvals[clientSecretVar(id)] == "" {
					t.Errorf("register-clients has no %s for client %s", clientSecretVar(id), id)
				}
			}
			if ovals["ORDER_CLIENT_ID"] != "orderflow-order" || ovals["ORDER_CLIENT_SECRET"] != rvals[clientSecretVar("orderflow-order")] {
				t.Errorf("order's client %s with its secret %s the registered one", ovals["ORDER_CLIENT_ID"],
					map[bool]string{true: "equal to", false: "not"}[ovals["ORDER_CLIENT_SECRET"] == rvals[clientSecretVar("orderflow-order")]])
			}
			_, pc, err := appContainer(m, "payment")
			if err != nil {
				t.Fatal(err)
			}
			_, prc, err := appContainer(m, "provider")
			if err != nil {
				t.Fatal(err)
			}
			pvals, _ := containerEnv(m, pc)
			prvals, _ := containerEnv(m, prc)
			if pvals["PAYMENT_PROVIDER_API_KEY"] == "" || pvals["PAYMENT_PROVIDER_API_KEY"] != prvals["PROVIDER_API_KEY"] {
				t.Error("payment's PAYMENT_PROVIDER_API_KEY is not the provider's PROVIDER_API_KEY")
			}

			// On AWS, Hydra's database is RDS over verified TLS, in both
			// containers.
			if strings.HasSuffix(k.dir, "/aws") {
				for _, c := range []*corev1.Container{h, mig} {
					vals, _ := containerEnv(m, c)
					u, err := url.Parse(vals["DSN"])
					if err != nil || u.Query().Get("sslmode") != "verify-full" || !mounted(c, u.Query().Get("sslrootcert")) {
						t.Errorf("hydra container %s DSN %q; want sslmode=verify-full with its sslrootcert mounted", c.Name, vals["DSN"])
					}
				}
			}
		})
	}
}

// mountsConfigMapKey reports whether path, in container c of spec, is a
// file of the generated ConfigMap base: a mount of a volume of that
// ConfigMap, and a key (or item) of it at the rest of the path.
func mountsConfigMapKey(m *manifest, spec *corev1.PodSpec, c *corev1.Container, path, base string) bool {
	cm, ok := generated(m.configMaps, base)
	if !ok {
		return false
	}
	for _, vm := range c.VolumeMounts {
		rest, ok := strings.CutPrefix(path, strings.TrimSuffix(vm.MountPath, "/")+"/")
		if !ok {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil || v.ConfigMap.Name != cm.Name {
				continue
			}
			if len(v.ConfigMap.Items) == 0 {
				_, has := cm.Data[rest]
				return has
			}
			for _, item := range v.ConfigMap.Items {
				if _, has := cm.Data[item.Key]; has && item.Path == rest {
					return true
				}
			}
		}
	}
	return false
}

// TestKubernetes_Gateway checks the public entry: HAProxy with the
// repository's gateway config from a ConfigMap, every variable it reads
// set, each upstream a Service and port that serves that route (Hydra's
// public port, never the admin one), the certificate from the Secret
// gateway-tls, and its Service the only one reachable from outside the
// cluster: a load balancer on AWS, ClusterIP elsewhere.
func TestKubernetes_Gateway(t *testing.T) {
	t.Parallel()
	vars := gatewayVars(t)
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			d, ok := m.deployments["gateway"]
			if !ok {
				t.Fatal("no Deployment gateway")
			}
			spec := &d.Spec.Template.Spec
			if len(spec.Containers) != 1 {
				t.Fatalf("Deployment gateway has %d containers; want 1", len(spec.Containers))
			}
			c := &spec.Containers[0]
			if !strings.HasPrefix(c.Image, "haproxy:2.6") {
				t.Errorf("gateway image %s; want haproxy:2.6, the version deploy/gateway is tested with", c.Image)
			}
			if !mountsConfigMapKey(m, spec, c, "/usr/local/etc/haproxy/haproxy.cfg", "gateway-files") {
				t.Error("gateway does not mount haproxy.cfg of ConfigMap gateway-files at /usr/local/etc/haproxy/haproxy.cfg")
			}
			env, problems := containerEnv(m, c)
			for _, p := range problems {
				t.Error(p)
			}
			for _, name := range vars {
				if env[name] == "" {
					t.Errorf("gateway does not set %s (read by deploy/gateway/haproxy.cfg)", name)
				}
			}
			if _, port, err := net.SplitHostPort(env["GATEWAY_ADDR"]); err != nil {
				t.Errorf("gateway GATEWAY_ADDR = %q: %v", env["GATEWAY_ADDR"], err)
			} else if got, err := containerPort(spec, intstr.FromString("https")); err != nil || strconv.Itoa(int(got)) != port {
				t.Errorf("gateway listens on %s; want its container port https (%d, %v)", port, got, err)
			}
			// The certificate: a file of the gateway-tls Secret's volume.
			cert := env["GATEWAY_CERT"]
			certOK := false
			for _, vm := range c.VolumeMounts {
				rest, ok := strings.CutPrefix(cert, strings.TrimSuffix(vm.MountPath, "/")+"/")
				if !ok {
					continue
				}
				for _, v := range spec.Volumes {
					if v.Name == vm.Name && v.Secret != nil && v.Secret.SecretName == "gateway-tls" &&
						(len(v.Secret.Items) == 0 && rest == "server.pem" || slices.ContainsFunc(v.Secret.Items, func(i corev1.KeyToPath) bool { return i.Path == rest })) {
						certOK = true
					}
				}
			}
			if !certOK {
				t.Errorf("gateway GATEWAY_CERT=%s is not a file of the Secret gateway-tls", cert)
			}

			for _, name := range vars {
				base, ok := strings.CutSuffix(name, "_UPSTREAM")
				if !ok {
					continue
				}
				host, port, err := net.SplitHostPort(env[name])
				if err != nil {
					t.Errorf("gateway %s = %q is not host:port", name, env[name])
					continue
				}
				// HAProxy's resolvers apply no search path: a fully
				// qualified Service name in the namespace.
				labels := strings.Split(host, ".")
				ns := d.Namespace
				if ns == "" {
					ns = "orderflow"
				}
				if len(labels) != 5 || labels[1] != ns || labels[2] != "svc" {
					t.Errorf("gateway %s host %s; want <service>.%s.svc.<cluster domain>", name, host, ns)
					continue
				}
				target := strings.ToLower(base)
				s, ok := m.services[labels[0]]
				if !ok || labels[0] != target {
					t.Errorf("gateway %s names Service %s; want Service %s", name, labels[0], target)
					continue
				}
				i := slices.IndexFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port })
				if i < 0 {
					t.Errorf("gateway %s: Service %s has no port %s", name, labels[0], port)
					continue
				}
				pt, ok := m.selectedPods(s.Spec.Selector)
				if !ok {
					t.Errorf("Service %s selects no pods", s.Name)
					continue
				}
				tp := s.Spec.Ports[i].TargetPort
				if target == "hydra" && (tp.String() != "public" && tp.IntValue() != 4444) {
					t.Errorf("gateway %s reaches Hydra's port %s; want the public one", name, tp.String())
				}
				if i := slices.IndexFunc(appServices(), func(a appService) bool { return a.name == target }); i >= 0 {
					if got, err := containerPort(&pt.template.Spec, tp); err != nil || got != int32(appServices()[i].port) {
						t.Errorf("gateway %s reaches port %d of %s (%v); want %d", name, got, target, err, appServices()[i].port)
					}
				}
			}

			for _, s := range m.services {
				switch {
				case s.Name == "gateway":
					want := corev1.ServiceTypeClusterIP
					if strings.HasSuffix(k.dir, "/aws") {
						want = corev1.ServiceTypeLoadBalancer
					}
					if s.Spec.Type != want {
						t.Errorf("Service gateway type %s; want %s", s.Spec.Type, want)
					}
				case s.Spec.Type != "" && s.Spec.Type != corev1.ServiceTypeClusterIP:
					t.Errorf("Service %s type %s; only the gateway may be reachable from outside the cluster", s.Name, s.Spec.Type)
				}
			}
		})
	}
}

// netPeer is the source of a connection: a pod (its namespace's labels and
// its own) or, with no namespace, an address outside the cluster.
type netPeer struct {
	name      string
	namespace string
	pod       map[string]string
	ip        netip.Addr
}

// selectorMatches reports whether a label selector matches set; a nil
// selector matches nothing, an empty one everything.
func selectorMatches(sel *metav1.LabelSelector, set map[string]string) bool {
	if sel == nil {
		return false
	}
	s, err := metav1.LabelSelectorAsSelector(sel)
	return err == nil && s.Matches(labels.Set(set))
}

// ingressAllowed evaluates the NetworkPolicies as the API defines them: a
// pod no policy selects for ingress accepts everything; a selected pod
// accepts a connection that some rule of some selecting policy allows, by
// source (pods of the policy's namespace, namespaces, address blocks) and
// port (number, range or the name of one of the target's container ports).
func ingressAllowed(m *manifest, ns string, target *corev1.PodTemplateSpec, from netPeer, port int32) bool {
	if ns == "" {
		ns = "orderflow"
	}
	nsLabels := func(name string) map[string]string { return map[string]string{"kubernetes.io/metadata.name": name} }
	selected := false
	for _, p := range m.networkPolicies {
		ingress := len(p.Spec.PolicyTypes) == 0 || slices.Contains(p.Spec.PolicyTypes, networkingv1.PolicyTypeIngress)
		if !ingress || !selectorMatches(&p.Spec.PodSelector, target.Labels) {
			continue
		}
		selected = true
		for _, rule := range p.Spec.Ingress {
			peerOK := len(rule.From) == 0
			for _, f := range rule.From {
				switch {
				case f.IPBlock != nil:
					cidr, err := netip.ParsePrefix(f.IPBlock.CIDR)
					ok := err == nil && from.namespace == "" && cidr.Contains(from.ip)
					for _, e := range f.IPBlock.Except {
						if ex, err := netip.ParsePrefix(e); err == nil && ex.Contains(from.ip) {
							ok = false
						}
					}
					peerOK = peerOK || ok
				case from.namespace == "":
				default:
					nsOK := f.NamespaceSelector == nil && from.namespace == ns ||
						f.NamespaceSelector != nil && selectorMatches(f.NamespaceSelector, nsLabels(from.namespace))
					podOK := f.PodSelector == nil || selectorMatches(f.PodSelector, from.pod)
					peerOK = peerOK || nsOK && podOK
				}
			}
			portOK := len(rule.Ports) == 0
			for _, rp := range rule.Ports {
				if rp.Protocol != nil && *rp.Protocol != corev1.ProtocolTCP {
					continue
				}
				switch {
				case rp.Port == nil:
					portOK = true
				case rp.Port.Type == intstr.String:
					got, err := containerPort(&target.Spec, *rp.Port)
					portOK = portOK || err == nil && got == port
				case rp.EndPort != nil:
					portOK = portOK || port >= rp.Port.IntVal && port <= *rp.EndPort
				default:
					portOK = portOK || rp.Port.IntVal == port
				}
			}
			if peerOK && portOK {
				return true
			}
		}
	}
	return !selected
}

// TestKubernetes_NetworkPolicies evaluates every connection between the
// pods of the rendering (and from outside the cluster, from a Prometheus in
// another namespace, and from a pod of another namespace that borrows
// order's labels) against the NetworkPolicies, and compares the allowed
// ones with the intended list: default deny; anyone to the gateway; the
// gateway to the public services and Hydra's public port; order to
// inventory and payment; payment to the provider; the token checkers to
// Hydra's public port; identity alone to Hydra's admin port; Prometheus to
// the processes' http ports; in the local overlay, every pod of the
// namespace to the components.
func TestKubernetes_NetworkPolicies(t *testing.T) {
	t.Parallel()
	pods := []string{"gateway", "order", "inventory", "payment", "provider", "notification", "identity", "hydra"}
	checkers := []string{"order", "inventory", "payment", "notification"}
	components := []string{"postgres", "redis", "localstack", "mailpit", "jaeger"}
	for _, k := range kustomizations() {
		t.Run(filepath.Base(k.dir), func(t *testing.T) {
			t.Parallel()
			m := render(t, k)
			var ns string
			var sources []netPeer
			for _, name := range pods {
				d, ok := m.deployments[name]
				if !ok {
					t.Fatalf("no Deployment %s", name)
				}
				ns = d.Namespace
				podNS := d.Namespace
				if podNS == "" {
					podNS = "orderflow"
				}
				sources = append(sources, netPeer{name: name, namespace: podNS, pod: d.Spec.Template.Labels})
			}
			sources = append(sources,
				netPeer{name: "internet", ip: netip.MustParseAddr("203.0.113.7")},
				netPeer{name: "prometheus", namespace: "monitoring", pod: map[string]string{"app.kubernetes.io/name": "prometheus"}},
				netPeer{name: "impostor", namespace: "elsewhere", pod: m.deployments["order"].Spec.Template.Labels},
			)

			want := map[string]bool{}
			allow := func(from, to string, port int) { want[fmt.Sprintf("%s -> %s:%d", from, to, port)] = true }
			for _, s := range sources {
				allow(s.name, "gateway", 8443)
			}
			allow("gateway", "order", 8080)
			allow("gateway", "inventory", 8081)
			allow("order", "inventory", 8081)
			allow("order", "payment", 8082)
			allow("payment", "provider", 8090)
			allow("gateway", "notification", 8083)
			allow("gateway", "identity", 8084)
			for _, s := range append([]string{"gateway"}, checkers...) {
				allow(s, "hydra", 4444)
			}
			allow("identity", "hydra", 4445)
			for _, svc := range appServices() {
				allow("prometheus", svc.name, int(svc.port))
			}

			targets := m.podTemplates()
			for _, pt := range targets {
				if slices.Contains(components, pt.name) {
					for _, s := range pods {
						for _, c := range pt.template.Spec.Containers {
							for _, p := range c.Ports {
								allow(s, pt.name, int(p.ContainerPort))
							}
						}
					}
				}
			}
			// A pod nobody wrote a policy for is unreachable too.
			targets = append(targets, podTemplate{kind: "Deployment", name: "newcomer", template: &corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app.kubernetes.io/name": "newcomer"}},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "newcomer", Ports: []corev1.ContainerPort{{ContainerPort: 9000}}}}},
			}})

			got := map[string]bool{}
			for _, pt := range targets {
				if pt.kind == "Job" {
					continue
				}
				for _, c := range pt.template.Spec.Containers {
					for _, p := range c.Ports {
						for _, s := range sources {
							if ingressAllowed(m, ns, pt.template, s, p.ContainerPort) {
								got[fmt.Sprintf("%s -> %s:%d", s.name, pt.name, p.ContainerPort)] = true
							}
						}
					}
				}
			}
			if diff := cmp.Diff(slices.Sorted(maps.Keys(want)), slices.Sorted(maps.Keys(got))); diff != "" {
				t.Errorf("allowed connections (-want +got):\n%s", diff)
			}
		})
	}
}
