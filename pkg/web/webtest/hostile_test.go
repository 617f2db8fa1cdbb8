package webtest

import (
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/pkg/web"
)

// newRouter has a route that fails with a 500 on a parameter that is not
// UTF-8, one that fails on a body field with a NUL, and one that answers a
// bare 400 without a problem body.
func newRouter() *chi.Mux {
	r := chi.NewRouter()
	r.Get("/things/{id}", func(w http.ResponseWriter, r *http.Request) {
		if !utf8.ValidString(chi.URLParam(r, "id")) {
			web.WriteProblem(w, web.NewProblem(http.StatusInternalServerError, "internal", "internal error"))
			return
		}
		web.WriteJSON(w, http.StatusOK, map[string]string{"id": chi.URLParam(r, "id")})
	})
	r.Post("/things", func(w http.ResponseWriter, r *http.Request) {
		var in struct {
			Name  string `json:"name"`
			Items []struct {
				SKU string `json:"sku"`
			} `json:"items"`
		}
		if err := web.Decode(r, web.MaxBodyBytes, &in); err != nil {
			web.WriteProblem(w, err.(*web.Problem))
			return
		}
		for _, it := range in.Items {
			if strings.ContainsRune(it.SKU, 0) {
				panic("NUL in a sku")
			}
		}
		w.WriteHeader(http.StatusCreated)
	})
	r.Get("/bare", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("q") != "ok" {
			http.Error(w, "bad", http.StatusBadRequest)
		}
	})
	return r
}

var routes = []Route{
	{Method: "GET", Pattern: "/things/{id}", Params: map[string]string{"id": "$uuid"}},
	{Method: "POST", Pattern: "/things", Body: `{"name":"n","items":[{"sku":"a"},{"sku":"b"}]}`},
	{Method: "GET", Pattern: "/bare", Query: map[string]string{"q": "ok"}},
}

func TestDrive_FindsEveryKindOfFailure(t *testing.T) {
	t.Parallel()
	r := chi.NewRouter()
	r.Use(web.Recoverer(slogDiscard()))
	r.Mount("/", newRouter())
	rep := Drive(r, Config{Routes: routes, Seed: 1, N: 1})
	found := map[string]bool{}
	for _, f := range rep.Failures {
		found[f.Route] = true
		if !strings.Contains(f.String(), "HOSTILE_SEED=1") {
			t.Errorf("failure does not name its seed:\n%s", f)
		}
	}
	for _, want := range []string{"GET /things/{id}", "POST /things", "GET /bare"} {
		if !found[want] {
			t.Errorf("Drive found no failure of %s in %d requests; failures: %v", want, rep.Requests, rep.Failures)
		}
	}
	g := &gen{rng: rand.New(rand.NewPCG(1, 2))}
	want := 3 // the random phase: one per route
	for _, r := range routes {
		want += len(g.mutations(r))
	}
	if rep.Requests != want {
		t.Errorf("Drive sent %d requests; want %d", rep.Requests, want)
	}
}

func TestDrive_SameSeedSameRequests(t *testing.T) {
	t.Parallel()
	record := func(seed uint64) []string {
		var got []string
		h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			got = append(got, r.Method+" "+r.RequestURI+" "+r.Header.Get("Authorization")+" "+string(b))
			w.WriteHeader(http.StatusNoContent)
		})
		Drive(h, Config{Routes: routes, Seed: seed, N: 20, Tokens: []string{"t1", "t2"}})
		return got
	}
	a, b, c := record(7), record(7), record(8)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Error("the same seed sent different requests")
	}
	if strings.Join(a, "\n") == strings.Join(c, "\n") {
		t.Error("two seeds sent the same requests")
	}
}

func TestDrive_CleanHandlerPasses(t *testing.T) {
	t.Parallel()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		web.WriteProblem(w, web.NewProblem(http.StatusBadRequest, "nope", "always refused"))
	})
	if rep := Drive(h, Config{Routes: routes, Seed: 3, N: 50}); len(rep.Failures) > 0 {
		t.Errorf("Drive reported %d failures of a handler that answers every request with a problem: %v", len(rep.Failures), rep.Failures[0])
	}
}

func TestCheckRoutes(t *testing.T) {
	t.Parallel()
	r := newRouter()
	if err := CheckRoutes(r, routes); err != nil {
		t.Errorf("CheckRoutes(all routes) = %v; want nil", err)
	}
	for name, table := range map[string][]Route{
		"a route missing": routes[:2],
		"a route too many": append(append([]Route{}, routes...),
			Route{Method: "DELETE", Pattern: "/things/{id}", Params: map[string]string{"id": "x"}}),
		"a parameter without a value": {{Method: "GET", Pattern: "/things/{id}"}, routes[1], routes[2]},
		"a route twice":               append(append([]Route{}, routes...), routes[0]),
	} {
		if err := CheckRoutes(r, table); err == nil {
			t.Errorf("CheckRoutes with %s = nil; want an error", name)
		}
	}
	if err := CheckRoutes(http.NotFoundHandler(), routes); err == nil {
		t.Error("CheckRoutes(not a chi router) = nil; want an error")
	}
}

func TestHeaderValue(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"a\x00b":    "ab",
		" \xff\t":   "\xff",
		"x\r\ny: 1": "xy: 1",
	} {
		if got := headerValue(in); got != want {
			t.Errorf("headerValue(%q) = %q; want %q", in, got, want)
		}
	}
}

func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
