package deploy

// The alerting path in docker compose: Prometheus loads the rules compose
// mounts, and sends to the alertmanager service, which mails Mailpit with
// the same configuration as the native Alertmanager but for the SMTP
// address. The rules themselves are checked in deploy/prometheus.

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v4"
)

func TestCompose_Alertmanager(t *testing.T) {
	t.Parallel()
	p := repoProject(t)
	root, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	am, err := p.GetService("alertmanager")
	if err != nil {
		t.Fatalf("docker-compose.yml has no alertmanager service: %v", err)
	}
	if !regexp.MustCompile(`^prom/alertmanager:v\d+\.\d+\.\d+$`).MatchString(am.Image) {
		t.Errorf("alertmanager image %q; want prom/alertmanager pinned to a release (vX.Y.Z)", am.Image)
	}
	const config = "/etc/alertmanager/alertmanager.yml"
	if !slices.Contains(am.Command, "--config.file="+config) {
		t.Errorf("alertmanager command %q does not read %s", am.Command, config)
	}
	mounts := func(s types.ServiceConfig) map[string]string {
		m := map[string]string{}
		for _, v := range s.Volumes {
			if v.Type == types.VolumeTypeBind {
				m[v.Target] = v.Source
			}
		}
		return m
	}
	if got, want := mounts(am)[config], filepath.Join(root, "deploy/alertmanager/alertmanager-compose.yml"); got != want {
		t.Errorf("alertmanager mounts %q at %s; want %s", got, config, want)
	}
	if got := am.DependsOn["mailpit"].Condition; got != types.ServiceConditionHealthy {
		t.Errorf("alertmanager depends_on mailpit with condition %q; want %q", got, types.ServiceConditionHealthy)
	}
	published := slices.ContainsFunc(am.Ports, func(port types.ServicePortConfig) bool {
		return port.Target == 9093 && port.Published == "9093" && port.HostIP == "127.0.0.1"
	})
	if !published {
		t.Errorf("alertmanager does not publish 127.0.0.1:9093:9093 (ports %+v)", am.Ports)
	}

	// Prometheus reads its rules from rules/ beside its configuration.
	prom, err := p.GetService("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mounts(prom)["/etc/prometheus/rules"], filepath.Join(root, "deploy/prometheus/rules"); got != want {
		t.Errorf("prometheus mounts %q at /etc/prometheus/rules; want %s", got, want)
	}
	if !slices.Contains(prom.Command, "--config.file=/etc/prometheus/prometheus.yml") {
		t.Errorf("prometheus command %q does not read /etc/prometheus/prometheus.yml", prom.Command)
	}
}

// TestAlertmanagerConfigs checks that the native and the compose
// Alertmanager configurations differ only in the SMTP server: maildev on
// 127.0.0.1:1025 natively, the mailpit service in compose.
func TestAlertmanagerConfigs(t *testing.T) {
	t.Parallel()
	load := func(name string) map[string]any {
		b, err := os.ReadFile(filepath.Join(repoRoot, "deploy/alertmanager", name))
		if err != nil {
			t.Fatal(err)
		}
		var c map[string]any
		if err := yaml.Unmarshal(b, &c); err != nil {
			t.Fatalf("deploy/alertmanager/%s: %v", name, err)
		}
		return c
	}
	native, compose := load("alertmanager.yml"), load("alertmanager-compose.yml")
	smarthost := func(c map[string]any) string {
		g, _ := c["global"].(map[string]any)
		s, _ := g["smtp_smarthost"].(string)
		g["smtp_smarthost"] = "" // compared apart
		return s
	}
	if got := smarthost(native); got != "127.0.0.1:1025" {
		t.Errorf("alertmanager.yml mails %q; want maildev on 127.0.0.1:1025", got)
	}
	if got := smarthost(compose); got != "mailpit:1025" {
		t.Errorf("alertmanager-compose.yml mails %q; want the mailpit service's SMTP port, mailpit:1025", got)
	}
	if diff := cmp.Diff(native, compose); diff != "" {
		t.Errorf("deploy/alertmanager configurations differ in more than the SMTP server (-native +compose):\n%s", diff)
	}
	// Every severity the rules give is routed.
	route, _ := native["route"].(map[string]any)
	var routed []string
	routes, _ := route["routes"].([]any)
	for _, r := range routes {
		m, _ := r.(map[string]any)
		ms, _ := m["matchers"].([]any)
		for _, x := range ms {
			s, _ := x.(string)
			routed = append(routed, strings.ReplaceAll(s, " ", ""))
		}
	}
	if !slices.Contains(routed, `severity="page"`) {
		t.Errorf("alertmanager.yml routes %q; want a route for severity=\"page\" (ticket takes the default)", routed)
	}
}
