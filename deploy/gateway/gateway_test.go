// Package gateway holds the edge gateway's HAProxy configuration
// (haproxy.cfg). Its tests run the real haproxy with that file in front of
// echo servers and check the promises the file makes: the public routes and
// nothing else, forwarded headers set by the gateway alone, TLS 1.3 with
// HTTP/2 and session resumption, and the security headers.
package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const notFoundBody = `{"type":"about:blank","title":"Not Found","status":404,"detail":"no such route","code":"not_found"}`

// backends are the upstreams haproxy.cfg reads, by the environment
// variable that addresses each.
var backends = map[string]string{
	"order":        "ORDER_UPSTREAM",
	"inventory":    "INVENTORY_UPSTREAM",
	"notification": "NOTIFICATION_UPSTREAM",
	"identity":     "IDENTITY_UPSTREAM",
	"hydra":        "HYDRA_UPSTREAM",
}

// echoed is what an echo backend answers: who it is and what it received.
type echoed struct {
	Backend         string   `json:"backend"`
	Method          string   `json:"method"`
	URI             string   `json:"uri"`
	Host            string   `json:"host"`
	BodyBytes       int      `json:"body_bytes"`
	XForwardedFor   []string `json:"x_forwarded_for"`
	XRealIP         []string `json:"x_real_ip"`
	TrueClientIP    []string `json:"true_client_ip"`
	XForwardedProto []string `json:"x_forwarded_proto"`
	XForwardedHost  []string `json:"x_forwarded_host"`
	Forwarded       []string `json:"forwarded"`
	MethodOverride  []string `json:"x_http_method_override"`
	RequestTimeout  []string `json:"request_timeout"`
}

// echo is a plain-HTTP upstream that records every request the gateway
// passes to it. HAProxy's health checks (HTTP/1.0 to the check path) are
// answered but not recorded.
type echo struct {
	name string
	srv  *httptest.Server
	mu   sync.Mutex
	hits []string
}

func newEcho(t *testing.T, name string) *echo {
	t.Helper()
	e := &echo{name: name}
	e.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMinor == 0 && (r.URL.Path == "/healthz" || r.URL.Path == "/health/alive") {
			return
		}
		n, _ := io.Copy(io.Discard, r.Body)
		e.mu.Lock()
		e.hits = append(e.hits, r.Method+" "+r.RequestURI)
		e.mu.Unlock()
		w.Header().Set("Server", "echo/1.0")
		w.Header().Set("X-Echo-Backend", e.name)
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(echoed{
			Backend:         e.name,
			Method:          r.Method,
			URI:             r.RequestURI,
			Host:            r.Host,
			BodyBytes:       int(n),
			XForwardedFor:   r.Header.Values("X-Forwarded-For"),
			XRealIP:         r.Header.Values("X-Real-IP"),
			TrueClientIP:    r.Header.Values("True-Client-IP"),
			XForwardedProto: r.Header.Values("X-Forwarded-Proto"),
			XForwardedHost:  r.Header.Values("X-Forwarded-Host"),
			Forwarded:       r.Header.Values("Forwarded"),
			MethodOverride:  r.Header.Values("X-HTTP-Method-Override"),
			RequestTimeout:  r.Header.Values("Request-Timeout"),
		})
	}))
	t.Cleanup(e.srv.Close)
	return e
}

func (e *echo) take() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	h := e.hits
	e.hits = nil
	return h
}

// gateway is a running haproxy with haproxy.cfg.
type gateway struct {
	addr    string // 127.0.0.1:port
	roots   *x509.CertPool
	echoes  map[string]*echo
	out     *syncBuffer
	h1, h2  *http.Client
	tlsConf *tls.Config
}

// hits returns, and forgets, what each backend received since the last call.
func (g *gateway) hits() map[string][]string {
	m := map[string][]string{}
	for name, e := range g.echoes {
		if h := e.take(); len(h) > 0 {
			m[name] = h
		}
	}
	return m
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func needHAProxy(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Fatal("haproxy is missing: apt-get install haproxy (make test installs it)")
	}
}

// makeCerts runs scripts/tls.sh into a temporary directory and returns it.
func makeCerts(t *testing.T, env ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tls")
	cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "tls.sh"), dir)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("scripts/tls.sh %s: %v\n%s", dir, err, out)
	}
	return dir
}

// startGateway starts haproxy -db -f haproxy.cfg on a free port in front
// of fresh echo backends; extraEnv overrides the environment it gets. The
// listening socket is made here and handed over as fd@3, so there is no
// window in which another process could take the port. haproxy is stopped
// when the test ends, however it ends.
func startGateway(t *testing.T, extraEnv ...string) *gateway {
	t.Helper()
	needHAProxy(t)
	dir := makeCerts(t)
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{roots: x509.NewCertPool(), echoes: map[string]*echo{}, out: &syncBuffer{}}
	if !g.roots.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem holds no certificate")
	}

	env := append(os.Environ(), "GATEWAY_ADDR=fd@3", "GATEWAY_CERT="+filepath.Join(dir, "server.pem"))
	for name, v := range backends {
		g.echoes[name] = newEcho(t, name)
		env = append(env, v+"="+g.echoes[name].srv.Listener.Addr().String())
	}
	env = append(env, extraEnv...)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = ln.Addr().String()
	lnFile, err := ln.(*net.TCPListener).File()
	ln.Close()
	if err != nil {
		t.Fatal(err)
	}
	defer lnFile.Close()

	cmd := exec.Command("haproxy", "-db", "-f", "haproxy.cfg")
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = g.out, g.out
	cmd.ExtraFiles = []*os.File{lnFile}
	setPdeathsig(cmd)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start haproxy: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("haproxy output:\n%s", g.out)
		}
	})

	g.tlsConf = &tls.Config{RootCAs: g.roots, MinVersion: tls.VersionTLS12}
	g.h2 = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		TLSClientConfig:   g.tlsConf.Clone(),
		ForceAttemptHTTP2: true,
	}}
	h1Conf := g.tlsConf.Clone()
	h1Conf.NextProtos = []string{"http/1.1"}
	g.h1 = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: h1Conf}}
	t.Cleanup(g.h1.CloseIdleConnections)
	t.Cleanup(g.h2.CloseIdleConnections)

	// Ready when a TLS handshake completes; the socket itself already
	// accepts (it was listening before haproxy started).
	deadline := time.Now().Add(5 * time.Second)
	for {
		d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: 200 * time.Millisecond}, Config: g.tlsConf}
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		c, err := d.DialContext(ctx, "tcp", g.addr)
		cancel()
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-exited:
			t.Fatalf("haproxy exited at start-up:\n%s", g.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not complete a TLS handshake on %s within 5s: %v", g.addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return g
}

// do sends a request through client c; target is sent exactly as written
// (no cleaning of dots or slashes by net/url).
func (g *gateway) do(t *testing.T, c *http.Client, method, target string, body io.Reader, hdr http.Header) (*http.Response, []byte) {
	t.Helper()
	u := &url.URL{Scheme: "https", Host: g.addr, Opaque: target}
	if strings.HasPrefix(target, "//") { // an Opaque "//x" would be read as a host
		u = &url.URL{Scheme: "https", Host: g.addr, Path: target}
	}
	req, err := http.NewRequest(method, "https://"+g.addr+"/", body)
	if err != nil {
		t.Fatal(err)
	}
	req.URL = u
	for k, vs := range hdr {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, target, err)
	}
	return resp, b
}

// raw writes an HTTP/1.1 request head byte for byte over TLS and reads the
// response: for request targets no client library would send.
func (g *gateway) raw(t *testing.T, head string) (*http.Response, []byte) {
	t.Helper()
	conf := g.tlsConf.Clone()
	conf.NextProtos = []string{"http/1.1"}
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 2 * time.Second}, "tcp", g.addr, conf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, head); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("read response to %q: %v", head, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, b
}

func decodeEcho(t *testing.T, b []byte) echoed {
	t.Helper()
	var e echoed
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("backend answer %q: %v", b, err)
	}
	return e
}

func wantProblem(t *testing.T, resp *http.Response, body []byte, status int, code string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status = %d; want %d (body %s)", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q; want application/problem+json", ct)
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
		Code   string `json:"code"`
	}
	if err := json.Unmarshal(body, &p); err != nil {
		t.Fatalf("problem body %q: %v", body, err)
	}
	if p.Status != status || p.Code != code || p.Type != "about:blank" || p.Title == "" {
		t.Errorf("problem = %+v; want status %d, code %q", p, status, code)
	}
}

func TestGateway(t *testing.T) {
	t.Parallel()
	g := startGateway(t)
	clients := []struct {
		name string
		c    *http.Client
	}{{"http1", g.h1}, {"http2", g.h2}}

	t.Run("public routes reach their backend", func(t *testing.T) {
		routes := []struct {
			method, target, backend string
		}{
			{"GET", "/v1/orders?customer_id=cus_1&limit=2&cursor=abc", "order"},
			{"POST", "/v1/orders", "order"},
			{"GET", "/v1/orders/ord_123", "order"},
			{"POST", "/v1/orders/ord_123/cancel", "order"},
			{"GET", "/v1/products?limit=5&cursor=x", "inventory"},
			{"GET", "/v1/products/SKU-00001", "inventory"},
			{"HEAD", "/v1/products/SKU-00001", "inventory"},
			{"GET", "/v1/invoices?order_id=ord_1", "notification"},
			{"GET", "/v1/emails?order_id=ord_1", "notification"},
			{"POST", "/v1/customers", "identity"},
			{"GET", "/login?login_challenge=abc", "identity"},
			{"POST", "/login", "identity"},
			{"GET", "/consent?consent_challenge=abc", "identity"},
			{"POST", "/consent", "identity"},
			{"GET", "/oauth2/auth?client_id=orderflow-cli&response_type=code&scope=openid+offline_access+orders", "hydra"},
			{"POST", "/oauth2/token", "hydra"},
			{"POST", "/oauth2/revoke", "hydra"},
			{"GET", "/oauth2/sessions/logout", "hydra"},
			{"GET", "/.well-known/openid-configuration", "hydra"},
			{"GET", "/.well-known/jwks.json", "hydra"},
			{"GET", "/userinfo", "hydra"},
			{"POST", "/userinfo", "hydra"},
		}
		for _, cl := range clients {
			for _, r := range routes {
				t.Run(cl.name+" "+r.method+" "+r.target, func(t *testing.T) {
					g.hits()
					var body io.Reader
					if r.method == "POST" {
						body = strings.NewReader(`{"sku":"SKU-00001"}`)
					}
					resp, b := g.do(t, cl.c, r.method, r.target, body, nil)
					if resp.StatusCode != http.StatusOK {
						t.Fatalf("%s %s = %d %s; want 200 from %s", r.method, r.target, resp.StatusCode, b, r.backend)
					}
					if got := resp.Header.Get("X-Echo-Backend"); got != r.backend {
						t.Errorf("%s %s reached %q; want %q", r.method, r.target, got, r.backend)
					}
					want := map[string][]string{r.backend: {r.method + " " + r.target}}
					if got := g.hits(); fmt.Sprint(got) != fmt.Sprint(want) {
						t.Errorf("backends received %v; want %v", got, want)
					}
					if r.method == "HEAD" {
						return
					}
					e := decodeEcho(t, b)
					if e.Method != r.method || e.URI != r.target || e.Host != g.addr {
						t.Errorf("backend got %s %s Host %s; want %s %s Host %s", e.Method, e.URI, e.Host, r.method, r.target, g.addr)
					}
					if r.method == "POST" && e.BodyBytes != 19 {
						t.Errorf("backend got a %d-byte body; want 19", e.BodyBytes)
					}
				})
			}
		}
	})

	t.Run("everything else is a 404 that reaches no backend", func(t *testing.T) {
		refused := []struct{ method, target string }{
			{"GET", "/"},
			{"GET", "/metrics"},
			{"GET", "/healthz"},
			{"GET", "/readyz"},
			{"GET", "/health/alive"},
			{"GET", "/health/ready"},
			{"PUT", "/admin/provider"},
			{"GET", "/admin/clients"},
			{"POST", "/v1/reservations"},
			{"POST", "/v1/reservations/ord_1/commit"},
			{"POST", "/v1/payments"},
			{"GET", "/v1/payments/pay_1"},
			{"GET", "/v1/payments?order_id=ord_1"},
			{"GET", "/internal/anything"},
			{"PUT", "/v1/products/SKU-00001/stock"},
			{"POST", "/v1/products"},
			{"DELETE", "/v1/products/SKU-00001"},
			{"PATCH", "/v1/products/SKU-00001"},
			{"DELETE", "/v1/orders/ord_1"},
			{"PUT", "/v1/orders/ord_1"},
			{"POST", "/v1/invoices"},
			{"GET", "/v1/invoices/inv_1"},
			{"HEAD", "/v1/emails"},
			{"GET", "/v1/customers"},
			{"PUT", "/login"},
			{"GET", "/login/extra"},
			{"GET", "/consentX"},
			{"GET", "/oauth2"},
			{"GET", "/userinfo/x"},
			{"GET", "/v1/ordersX"},
			{"GET", "/v1/products-admin"},
			{"GET", "/v1/orders.json"},
			{"OPTIONS", "/v1/orders"},
			{"GET", "/V1/ORDERS"},
		}
		for _, cl := range clients {
			for _, r := range refused {
				t.Run(cl.name+" "+r.method+" "+r.target, func(t *testing.T) {
					g.hits()
					resp, b := g.do(t, cl.c, r.method, r.target, nil, nil)
					if r.method == "HEAD" {
						if resp.StatusCode != http.StatusNotFound {
							t.Errorf("HEAD %s = %d; want 404", r.target, resp.StatusCode)
						}
					} else {
						wantProblem(t, resp, b, http.StatusNotFound, "not_found")
						if string(b) != notFoundBody {
							t.Errorf("body = %s; want %s", b, notFoundBody)
						}
					}
					if got := g.hits(); len(got) != 0 {
						t.Errorf("%s %s reached backends: %v", r.method, r.target, got)
					}
				})
			}
		}
	})

	t.Run("encoded tricks reach no private route", func(t *testing.T) {
		tricks := []struct {
			target  string
			status  int
			backend string // "" for none
			uri     string // what that backend must see
		}{
			{"//metrics", 404, "", ""},
			{"///v1/orders/..//metrics", 404, "", ""},
			{"/v1/orders/../metrics", 404, "", ""},
			{"/v1/orders/../../metrics", 404, "", ""},
			{"/v1/orders/%2e%2e/metrics", 404, "", ""},
			{"/v1/orders/%2E%2E/%2e%2e/metrics", 404, "", ""},
			{"/v1/orders/.%2e/.%2E/readyz", 404, "", ""},
			{"/v1/orders/./../metrics", 404, "", ""},
			{"/v1/orders/..", 404, "", ""},
			{"/v1/orders/%2e%2e", 404, "", ""},
			{"/V1/ORDERS", 404, "", ""},
			{"/v1/%4frders", 404, "", ""}, // %4f is "O"
			{"/v1/orders%2F..%2Fmetrics", 404, "", ""},
			{"/v1/orders%2f..%2fmetrics", 404, "", ""},
			{"/v1/orders/..%2Fmetrics", 404, "", ""},
			{"/v1/orders/%2e%2e%2fmetrics", 404, "", ""},
			{"/v1/orders/..%5Cmetrics", 404, "", ""},
			{"/v1/orders/..\\metrics", 404, "", ""},
			{"/v1/orders/..;/metrics", 404, "", ""},
			{"/v1/orders/%00", 404, "", ""},
			{"/v1/products/SKU-1/%2e%2e/%2e%2e/%2e%2e/admin/provider", 404, "", ""},
			{"/oauth2/../admin/clients", 404, "", ""},
			{"/.well-known/../metrics", 404, "", ""},
			{"/v1/orders/%zz", 400, "", ""},
			{"/v1/orders/%%32%65%%32%65/metrics", 400, "", ""},
			// Decoded once, into a literal "%2e" inside the order routes.
			{"/v1/orders/%252e%252e/metrics", 200, "order", "/v1/orders/%252e%252e/metrics"},
			// Encoded unreserved characters are decoded: the same URI.
			{"/v1/%6frders/ord_1?x=%41", 200, "order", "/v1/orders/ord_1?x=A"},
			{"/v1/orders/a/../ord_1", 200, "order", "/v1/orders/ord_1"},
		}
		for _, tr := range tricks {
			check := func(t *testing.T, resp *http.Response, b []byte) {
				t.Helper()
				hits := g.hits()
				if resp.StatusCode != tr.status {
					t.Errorf("GET %s = %d %s; want %d", tr.target, resp.StatusCode, b, tr.status)
				}
				var want map[string][]string
				if tr.backend == "" {
					if tr.status >= 400 {
						code := map[int]string{400: "bad_request", 404: "not_found"}[tr.status]
						wantProblem(t, resp, b, tr.status, code)
					}
				} else {
					want = map[string][]string{tr.backend: {"GET " + tr.uri}}
				}
				if fmt.Sprint(hits) != fmt.Sprint(want) {
					t.Errorf("GET %s: backends received %v; want %v", tr.target, hits, want)
				}
			}
			t.Run("raw "+tr.target, func(t *testing.T) {
				g.hits()
				resp, b := g.raw(t, "GET "+tr.target+" HTTP/1.1\r\nHost: "+g.addr+"\r\nConnection: close\r\n\r\n")
				check(t, resp, b)
			})
			if strings.Contains(tr.target, "\\") {
				continue // net/http does not send a backslash in :path
			}
			t.Run("http2 "+tr.target, func(t *testing.T) {
				g.hits()
				resp, b := g.do(t, g.h2, "GET", tr.target, nil, nil)
				if resp.ProtoMajor != 2 {
					t.Fatalf("proto = %s; want HTTP/2", resp.Proto)
				}
				check(t, resp, b)
			})
		}
		t.Run("absolute-form target", func(t *testing.T) {
			for _, target := range []string{
				"https://" + g.addr + "/metrics",
				"https://" + g.addr + "/v1/orders/%2e%2e/metrics",
				"https://" + g.addr + "//metrics",
			} {
				g.hits()
				resp, b := g.raw(t, "GET "+target+" HTTP/1.1\r\nHost: "+g.addr+"\r\nConnection: close\r\n\r\n")
				wantProblem(t, resp, b, http.StatusNotFound, "not_found")
				if got := g.hits(); len(got) != 0 {
					t.Errorf("GET %s reached backends: %v", target, got)
				}
			}
		})
	})

	t.Run("forwarded headers are the gateway's own", func(t *testing.T) {
		spoof := http.Header{
			"X-Forwarded-For":        {"6.6.6.6", "7.7.7.7, 8.8.8.8"},
			"X-Real-Ip":              {"6.6.6.6"},
			"True-Client-Ip":         {"6.6.6.6"},
			"Forwarded":              {"for=6.6.6.6;proto=http"},
			"X-Forwarded-Proto":      {"http"},
			"X-Forwarded-Host":       {"evil.example"},
			"X-Http-Method-Override": {"PUT"},
			"Request-Timeout":        {"1"},
		}
		for _, cl := range clients {
			t.Run(cl.name, func(t *testing.T) {
				resp, b := g.do(t, cl.c, "GET", "/v1/products/SKU-00001", nil, spoof)
				if resp.StatusCode != http.StatusOK {
					t.Fatalf("status = %d %s; want 200", resp.StatusCode, b)
				}
				e := decodeEcho(t, b)
				if fmt.Sprint(e.XForwardedFor) != "[127.0.0.1]" {
					t.Errorf("X-Forwarded-For = %q; want exactly [127.0.0.1]", e.XForwardedFor)
				}
				if fmt.Sprint(e.XForwardedProto) != "[https]" {
					t.Errorf("X-Forwarded-Proto = %q; want [https]", e.XForwardedProto)
				}
				for name, got := range map[string][]string{
					"X-Real-IP": e.XRealIP, "True-Client-IP": e.TrueClientIP, "Forwarded": e.Forwarded,
					"X-Forwarded-Host": e.XForwardedHost, "X-HTTP-Method-Override": e.MethodOverride,
					"Request-Timeout": e.RequestTimeout,
				} {
					if len(got) != 0 {
						t.Errorf("%s = %q reached the backend; want it removed", name, got)
					}
				}
				if e.Host != g.addr {
					t.Errorf("Host = %q; want %q (preserved)", e.Host, g.addr)
				}
				g.hits()
			})
		}
	})

	t.Run("TLS 1.2 is refused", func(t *testing.T) {
		c, err := tls.Dial("tcp", g.addr, &tls.Config{RootCAs: g.roots, MaxVersion: tls.VersionTLS12})
		if err == nil {
			c.Close()
			t.Fatalf("a TLS 1.2 handshake succeeded (version %x); want it refused", c.ConnectionState().Version)
		}
	})

	t.Run("TLS 1.3 verified against the local CA", func(t *testing.T) {
		for _, name := range []string{"127.0.0.1", "localhost"} {
			c, err := tls.Dial("tcp", g.addr, &tls.Config{RootCAs: g.roots, ServerName: name})
			if err != nil {
				t.Fatalf("handshake as %s: %v", name, err)
			}
			st := c.ConnectionState()
			c.Close()
			if st.Version != tls.VersionTLS13 {
				t.Errorf("version as %s = %x; want TLS 1.3", name, st.Version)
			}
			if len(st.VerifiedChains) == 0 {
				t.Errorf("as %s: no verified chain", name)
			}
		}
		// Verification is real: without the CA, or for another name, it fails.
		if c, err := tls.Dial("tcp", g.addr, &tls.Config{}); err == nil {
			c.Close()
			t.Error("handshake without the local CA succeeded; want unknown authority")
		}
		if c, err := tls.Dial("tcp", g.addr, &tls.Config{RootCAs: g.roots, ServerName: "example.com"}); err == nil {
			c.Close()
			t.Error("handshake as example.com succeeded; want a name mismatch")
		}
	})

	t.Run("HTTP/2 negotiated by ALPN", func(t *testing.T) {
		resp, _ := g.do(t, g.h2, "GET", "/v1/products/SKU-00001", nil, nil)
		if resp.ProtoMajor != 2 || resp.TLS == nil || resp.TLS.NegotiatedProtocol != "h2" {
			t.Errorf("proto = %s, TLS state %+v; want HTTP/2 negotiated as h2", resp.Proto, resp.TLS)
		}
		resp, _ = g.do(t, g.h1, "GET", "/v1/products/SKU-00001", nil, nil)
		if resp.ProtoMajor != 1 || resp.ProtoMinor != 1 {
			t.Errorf("proto for an http/1.1-only client = %s; want HTTP/1.1", resp.Proto)
		}
		g.hits()
	})

	t.Run("TLS session resumption", func(t *testing.T) {
		conf := &tls.Config{RootCAs: g.roots, ClientSessionCache: tls.NewLRUClientSessionCache(4), NextProtos: []string{"http/1.1"}}
		for i, wantResumed := range []bool{false, true, true} {
			c, err := tls.Dial("tcp", g.addr, conf)
			if err != nil {
				t.Fatal(err)
			}
			// TLS 1.3 tickets arrive after the handshake: read a response
			// so the client has processed them before the next dial.
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.WriteString(c, "GET /v1/products/SKU-00001 HTTP/1.1\r\nHost: "+g.addr+"\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			resumed := c.ConnectionState().DidResume
			c.Close()
			if resumed != wantResumed {
				t.Errorf("connection %d: DidResume = %v; want %v", i+1, resumed, wantResumed)
			}
		}
		g.hits()
	})

	t.Run("security headers on every response", func(t *testing.T) {
		for _, target := range []string{"/v1/products/SKU-00001", "/metrics"} {
			resp, _ := g.do(t, g.h2, "GET", target, nil, nil)
			if got := resp.Header.Get("Strict-Transport-Security"); got != "max-age=31536000" {
				t.Errorf("GET %s: Strict-Transport-Security = %q; want max-age=31536000", target, got)
			}
			if got := resp.Header.Values("Server"); len(got) != 0 {
				t.Errorf("GET %s: Server = %q; want none", target, got)
			}
		}
		g.hits()
	})

	t.Run("a body over 1 MiB is refused at the edge", func(t *testing.T) {
		g.hits()
		resp, b := g.raw(t, "POST /v1/orders HTTP/1.1\r\nHost: "+g.addr+"\r\nContent-Type: application/json\r\nContent-Length: 2097152\r\n\r\n")
		wantProblem(t, resp, b, http.StatusRequestEntityTooLarge, "body_too_large")
		if got := g.hits(); len(got) != 0 {
			t.Errorf("backends received %v; want nothing", got)
		}
	})

	t.Run("log lines start with the client address", func(t *testing.T) {
		g.do(t, g.h1, "GET", "/v1/orders/ord_123", nil, nil)
		g.hits()
		line := regexp.MustCompile(`(?m)^127\.0\.0\.1:\d+ \[[^]]+\] public~ order/order .* "GET /v1/orders/ord_123 HTTP/1\.1"`)
		deadline := time.Now().Add(2 * time.Second)
		for !line.MatchString(g.out.String()) {
			if time.Now().After(deadline) {
				t.Fatalf("no log line for GET /v1/orders/ord_123 with the client address; output:\n%s", g.out)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestGatewayUnavailableService: a service that is down is a fast 503
// problem with Retry-After, not a hang or an HTML page.
func TestGatewayUnavailableService(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := ln.Addr().String()
	ln.Close()
	g := startGateway(t, "IDENTITY_UPSTREAM="+closed)
	start := time.Now()
	resp, b := g.do(t, g.h2, "GET", "/login?login_challenge=abc", nil, nil)
	wantProblem(t, resp, b, http.StatusServiceUnavailable, "dependency_unavailable")
	if got := resp.Header.Get("Retry-After"); got != "1" {
		t.Errorf("Retry-After = %q; want 1", got)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("answered after %v; want a fast failure", d)
	}
	// The other services are not affected.
	resp, b = g.do(t, g.h2, "GET", "/v1/products/SKU-00001", nil, nil)
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v1/products/SKU-00001 = %d %s; want 200", resp.StatusCode, b)
	}
}

// TestConfigValid: haproxy -c passes with only the certificate given
// (every upstream from its default), and warns about nothing but a
// resolv.conf without nameservers, which is the machine's doing.
func TestConfigValid(t *testing.T) {
	t.Parallel()
	needHAProxy(t)
	dir := makeCerts(t)
	cmd := exec.Command("haproxy", "-c", "-f", "haproxy.cfg")
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(name, "GATEWAY_") && !strings.HasSuffix(name, "_UPSTREAM") {
			env = append(env, kv)
		}
	}
	cmd.Env = append(env, "GATEWAY_CERT="+filepath.Join(dir, "server.pem"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("haproxy -c -f haproxy.cfg: %v\n%s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "[WARNING]") && !strings.Contains(line, "has no nameservers configured") {
			t.Errorf("haproxy -c -f haproxy.cfg warns: %s", line)
		}
	}
}

// TestTLSScript: scripts/tls.sh makes a CA and a server certificate that
// verifies for 127.0.0.1, localhost and $TLS_SANS, keeps valid files on a
// second run, and keeps private keys private.
func TestTLSScript(t *testing.T) {
	t.Parallel()
	dir := makeCerts(t, "TLS_SANS=DNS:gateway")
	read := func() map[string]string {
		m := map[string]string{}
		for _, f := range []string{"ca.pem", "ca-key.pem", "server-cert.pem", "server-key.pem", "server.pem"} {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			m[f] = string(b)
		}
		return m
	}
	first := read()

	for _, f := range []string{"ca-key.pem", "server-key.pem", "server.pem"} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v; want 0600", f, fi.Mode().Perm())
		}
	}
	if first["server.pem"] != first["server-cert.pem"]+first["server-key.pem"] {
		t.Error("server.pem is not server-cert.pem followed by server-key.pem")
	}
	if _, err := tls.X509KeyPair([]byte(first["server.pem"]), []byte(first["server.pem"])); err != nil {
		t.Errorf("server.pem is not a certificate and its key: %v", err)
	}

	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM([]byte(first["ca.pem"]))
	cert, err := tls.X509KeyPair([]byte(first["server-cert.pem"]), []byte(first["server-key.pem"]))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"127.0.0.1", "localhost", "gateway"} {
		if _, err := leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	ca, err := x509.ParseCertificate(mustPEM(t, first["ca.pem"]))
	if err != nil {
		t.Fatal(err)
	}
	if years := ca.NotAfter.Sub(ca.NotBefore).Hours() / 24 / 365; years < 9.9 || !ca.IsCA {
		t.Errorf("CA: IsCA %v, valid %.1f years; want a CA for 10 years", ca.IsCA, years)
	}

	// A second run with the same names keeps every file.
	cmd := exec.Command("bash", filepath.Join("..", "..", "scripts", "tls.sh"), dir)
	cmd.Env = append(os.Environ(), "TLS_SANS=DNS:gateway")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("second run: %v\n%s", err, out)
	}
	if second := read(); fmt.Sprint(second) != fmt.Sprint(first) {
		t.Error("a second run changed files that were still valid")
	}

	// A new name replaces the server certificate but keeps the CA.
	cmd = exec.Command("bash", filepath.Join("..", "..", "scripts", "tls.sh"), dir)
	cmd.Env = append(os.Environ(), "TLS_SANS=DNS:gateway,DNS:edge")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("run with a new name: %v\n%s", err, out)
	}
	third := read()
	if third["ca.pem"] != first["ca.pem"] || third["ca-key.pem"] != first["ca-key.pem"] {
		t.Error("adding a name replaced the CA; want it kept")
	}
	if third["server-cert.pem"] == first["server-cert.pem"] {
		t.Error("adding a name kept the old server certificate")
	}
}

func mustPEM(t *testing.T, s string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(s))
	if b == nil {
		t.Fatal("no PEM block")
	}
	return b.Bytes
}
