package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const recorded = "Cache-Control: public, max-age=5\r\n" +
	"Content-Length: 999\r\n" +
	"Content-Type: application/json\r\n" +
	"Date: Thu, 03 Dec 2026 16:36:55 GMT\r\n" +
	"Etag: \"0123456789abcdef0123456789abcdef\"\r\n" +
	"X-Cache: HIT\r\n" +
	"\r\n" +
	`{"sku":"SKU-00001","name":"Product 00001","price_cents":1999,"currency":"USD","available":1000}` + "\n"

func TestHandler(t *testing.T) {
	rec, err := parseRecording([]byte(recorded))
	if err != nil {
		t.Fatalf("parseRecording = %v", err)
	}
	srv := httptest.NewServer(newHandler(rec))
	defer srv.Close()
	wantBody := `{"sku":"SKU-00001","name":"Product 00001","price_cents":1999,"currency":"USD","available":1000}` + "\n"

	tests := []struct {
		name, method, path string
		wantStatus         int
		wantBody           string
		wantHeader         map[string]string
	}{
		{"product read replays the recording", http.MethodGet, "/v1/products/SKU-00777", http.StatusOK, wantBody,
			map[string]string{"Cache-Control": "public, max-age=5", "Content-Type": "application/json",
				"Etag": `"0123456789abcdef0123456789abcdef"`, "X-Cache": "HIT", "Content-Length": "96"}},
		{"head has the headers and no body", http.MethodHead, "/v1/products/SKU-00001", http.StatusOK, "",
			map[string]string{"Etag": `"0123456789abcdef0123456789abcdef"`, "Content-Length": "96"}},
		{"health check", http.MethodGet, "/healthz", http.StatusOK, "", nil},
		{"other path", http.MethodGet, "/v1/orders", http.StatusNotFound, "404 page not found\n", nil},
		{"other method", http.MethodPost, "/v1/products/SKU-00001", http.StatusNotFound, "404 page not found\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, srv.URL+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Errorf("%s %s = %d; want %d", tt.method, tt.path, resp.StatusCode, tt.wantStatus)
			}
			if diff := cmp.Diff(tt.wantBody, string(body)); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			for k, v := range tt.wantHeader {
				if got := resp.Header.Get(k); got != v {
					t.Errorf("header %s = %q; want %q", k, got, v)
				}
			}
			if tt.wantStatus == http.StatusOK && resp.Header.Get("Date") == "Thu, 03 Dec 2026 16:36:55 GMT" {
				t.Errorf("Date is the recorded one; want net/http's own")
			}
		})
	}
}

func TestParseRecording_Invalid(t *testing.T) {
	for name, in := range map[string]string{
		"no body":          "Content-Type: application/json\r\n\r\n",
		"malformed header": "not a header line\r\n\r\n{}\n",
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := parseRecording([]byte(in)); err == nil {
				t.Errorf("parseRecording(%q) = nil error; want one", in)
			}
		})
	}
}
