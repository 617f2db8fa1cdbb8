package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestGateway puts the real gateway (HAProxy, deploy/gateway/haproxy.cfg,
// TLS 1.3 with a CA from scripts/tls.sh) in front of a stack and a real
// Hydra: a customer orders over HTTP/2 with a token, the token is fetched
// through the gateway, and nothing internal is reachable.
func TestGateway(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy is missing: apt-get install haproxy (make test installs it)")
	}
	s := startStack(t)
	dir := t.TempDir()
	if out, err := exec.Command("bash", filepath.Join("..", "scripts", "tls.sh"), dir).CombinedOutput(); err != nil {
		t.Fatalf("scripts/tls.sh: %v\n%s", err, out)
	}
	port := freePort(t)
	hydraHost := strings.TrimSuffix(strings.TrimPrefix(hydra.Issuer, "http://"), "/")
	cmd := exec.Command("haproxy", "-db", "-f", filepath.Join("..", "deploy", "gateway", "haproxy.cfg"))
	cmd.Env = append(os.Environ(), fmt.Sprintf("GATEWAY_ADDR=127.0.0.1:%d", port), "GATEWAY_CERT="+filepath.Join(dir, "server.pem"),
		fmt.Sprintf("ORDER_UPSTREAM=127.0.0.1:%d", s.ports["order"]), fmt.Sprintf("INVENTORY_UPSTREAM=127.0.0.1:%d", s.ports["inventory"]),
		fmt.Sprintf("NOTIFICATION_UPSTREAM=127.0.0.1:%d", s.ports["notification"]),
		fmt.Sprintf("IDENTITY_UPSTREAM=127.0.0.1:%d", freePort(t)), "HYDRA_UPSTREAM="+hydraHost)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_, _ = cmd.Process.Wait()
	})
	ca, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	eventually(t, 10*time.Second, "the gateway answers", func() bool {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
			c.Close()
			resp, err := client.Get(base + "/v1/products/SKU-00001")
			if err == nil {
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			}
		}
		return false
	})

	call := func(method, path, token, body string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		req.Header.Set("Idempotency-Key", newKey())
		req.Header.Set("X-Forwarded-For", "6.6.6.6")
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}

	t.Run("discovery through the gateway", func(t *testing.T) {
		resp, body := call("GET", "/.well-known/openid-configuration", "", "")
		if resp.StatusCode != 200 || !strings.Contains(body, `"jwks_uri"`) {
			t.Errorf("discovery = %d %s", resp.StatusCode, body)
		}
	})
	t.Run("a customer orders over HTTP/2", func(t *testing.T) {
		resp, body := call("POST", "/v1/orders", token(t, "cus_gateway"),
			`{"items":[{"sku":"SKU-00012","quantity":1}],"payment_method":"pm_card_ok"}`)
		if resp.StatusCode != 201 || !strings.Contains(body, `"status":"confirmed"`) || !strings.Contains(body, `"customer_id":"cus_gateway"`) {
			t.Fatalf("order via the gateway = %d %s", resp.StatusCode, body)
		}
		if resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
			t.Errorf("protocol = HTTP/%d, TLS %x; want HTTP/2 over TLS 1.3", resp.ProtoMajor, resp.TLS.Version)
		}
	})
	refusals := []struct {
		name, method, path, token string
		want                      int
	}{
		{"no token", "POST", "/v1/orders", "", 401},
		{"a forged token (alg none)", "POST", "/v1/orders", algNone(t, token(t, "cus_gateway")), 401},
		{"another customer's order list", "GET", "/v1/orders?customer_id=cus_gateway", token(t, "cus_gateway_other"), 403},
		{"the order service's token on orders", "GET", "/v1/orders", token(t, "order-service:payments"), 403},
	}
	for _, tc := range refusals {
		t.Run("refused through the gateway: "+tc.name, func(t *testing.T) {
			resp, body := call(tc.method, tc.path, tc.token, `{"items":[{"sku":"SKU-00012","quantity":1}],"payment_method":"pm_card_ok"}`)
			if resp.StatusCode != tc.want {
				t.Errorf("%s %s = %d %s; want %d", tc.method, tc.path, resp.StatusCode, body, tc.want)
			}
		})
	}
	t.Run("another customer's order through the gateway is 404", func(t *testing.T) {
		_, body := call("GET", "/v1/orders", token(t, "cus_gateway"), "")
		i := strings.Index(body, `"id":"`)
		if i < 0 {
			t.Fatalf("cus_gateway's orders: %s", body)
		}
		id := body[i+6 : i+6+36]
		if resp, body := call("GET", "/v1/orders/"+id, token(t, "cus_gateway_other"), ""); resp.StatusCode != 404 {
			t.Errorf("another's order = %d %s; want 404", resp.StatusCode, body)
		}
	})
	internal := []struct{ method, path string }{
		{"POST", "/v1/payments/" + "01a23c75-d753-76a9-ab97-ccf143a0433b" + "/refund"},
		{"POST", "/v1/reservations/01a23c75-d718-7258-bb58-cafcb8882e15/release"},
		{"PUT", "/v1/products/SKU-00012/stock"},
		{"PUT", "/admin/provider"},
		{"GET", "/metrics"},
		{"GET", "/v1/orders/../metrics"},
	}
	for _, c := range internal {
		t.Run("not routed: "+c.method+" "+c.path, func(t *testing.T) {
			if resp, body := call(c.method, c.path, token(t, "admin"), `{}`); resp.StatusCode != 404 {
				t.Errorf("%s %s via the gateway = %d %s; want 404", c.method, c.path, resp.StatusCode, body)
			}
		})
	}
}
