package web_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/orderflow/orderflow/pkg/web"
)

func TestClientAddr(t *testing.T) {
	t.Parallel()
	trusted, err := web.ParsePrefixes("127.0.0.1, 10.0.0.0/8")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, remote string
		xff          []string
		want         string
	}{
		{"no header", "192.0.2.1:5000", nil, "192.0.2.1:5000"},
		{"untrusted peer: header ignored", "192.0.2.1:5000", []string{"6.6.6.6"}, "192.0.2.1:5000"},
		{"gateway: its client", "127.0.0.1:5000", []string{"198.51.100.7"}, "198.51.100.7:0"},
		{"gateway: a spoofed left-most hop is not believed", "127.0.0.1:5000", []string{"6.6.6.6, 198.51.100.7"}, "198.51.100.7:0"},
		{"two trusted hops", "127.0.0.1:5000", []string{"198.51.100.7, 10.1.2.3"}, "198.51.100.7:0"},
		{"two header lines", "127.0.0.1:5000", []string{"6.6.6.6", "198.51.100.7"}, "198.51.100.7:0"},
		{"garbage hop", "127.0.0.1:5000", []string{"not-an-ip"}, "127.0.0.1:5000"},
		{"only trusted hops", "127.0.0.1:5000", []string{"10.0.0.1"}, "10.0.0.1:0"},
		{"ipv6 client", "127.0.0.1:5000", []string{"2001:db8::1"}, "[2001:db8::1]:0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			h := web.ClientAddr(trusted)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got = r.RemoteAddr }))
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r.RemoteAddr = tt.remote
			for _, v := range tt.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			r.Header.Set("X-Real-IP", "6.6.6.6")
			h.ServeHTTP(httptest.NewRecorder(), r)
			if got != tt.want {
				t.Errorf("RemoteAddr = %q; want %q", got, tt.want)
			}
		})
	}
	if _, err := web.ParsePrefixes("10.0.0.0/8, nope"); err == nil {
		t.Error("ParsePrefixes(nope) = nil error")
	}
}
