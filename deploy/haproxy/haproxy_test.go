// Package haproxy holds the HAProxy configurations of the replicated
// services; its test keeps the native and the compose one in step.
package haproxy

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// settings returns a configuration's directives without comments, blank
// lines, the resolvers section and the lines that differ by design: where
// the frontends bind and how the servers are found.
func settings(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	skip := false
	for _, line := range strings.Split(string(b), "\n") {
		line, _, _ = strings.Cut(line, "#")
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		switch strings.Fields(line)[0] {
		case "global", "defaults", "frontend", "backend", "listen":
			skip = false
		case "resolvers":
			skip = true
		}
		if skip || strings.HasPrefix(line, "bind ") || strings.HasPrefix(line, "server") {
			continue
		}
		out = append(out, line)
	}
	return out
}

func TestComposeConfigMatchesNative(t *testing.T) {
	t.Parallel()
	if diff := cmp.Diff(settings(t, "haproxy.cfg"), settings(t, "haproxy-compose.cfg")); diff != "" {
		t.Errorf("haproxy-compose.cfg differs from haproxy.cfg beyond binds, servers and resolvers (-native +compose):\n%s", diff)
	}
}

// TestConfigsValid runs haproxy -c on both files. The compose one names
// servers by Docker DNS; init-addr none lets it validate without them.
func TestConfigsValid(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy is not installed; install Debian's package: sudo apt-get install haproxy")
	}
	for _, f := range []string{"haproxy.cfg", "haproxy-compose.cfg"} {
		cmd := exec.Command("haproxy", "-c", "-f", f)
		cmd.Env = append(os.Environ(), "ORDER_PORT=1", "INVENTORY_PORT=2")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("haproxy -c -f %s: %v\n%s", f, err, out)
		}
	}
}
