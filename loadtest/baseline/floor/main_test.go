package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
)

func TestRun_HTTP(t *testing.T) {
	var served atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Write([]byte(`{"sku":"SKU-00001"}`))
	}))
	defer srv.Close()
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-unit", "http", "-c", "2", "-d", "200ms", "-http", srv.URL}, &out); err != nil {
		t.Fatal(err)
	}
	line := strings.TrimSpace(out.String())
	if !strings.HasPrefix(line, "RESULT unit=http ops=") || !strings.Contains(line, " errors=0 ") {
		t.Fatalf("output = %q; want a RESULT line without errors", line)
	}
	ops, _ := strconv.ParseInt(strings.TrimPrefix(strings.Fields(line)[2], "ops="), 10, 64)
	// A request the deadline cut short reached the server but is no op.
	if n := served.Load(); ops == 0 || ops > n || n > ops+2 {
		t.Errorf("ops = %d; the server answered %d requests (2 workers)", ops, n)
	}
}

func TestRun_Errors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no", http.StatusInternalServerError)
	}))
	defer srv.Close()
	var out bytes.Buffer
	err := run(context.Background(), []string{"-unit", "http", "-c", "1", "-d", "100ms", "-http", srv.URL}, &out)
	if err == nil || !strings.Contains(out.String(), "ops=0") {
		t.Errorf("every op failing: err = %v, output %q; want an error and ops=0", err, out.String())
	}
	for _, args := range [][]string{{"-unit", "nope"}, {"-unit", "http"}, {"-unit", "sqs"}, {"-unit", "smtp"}, {"-unit", "sql_commit"}} {
		if err := run(context.Background(), args, &out); err == nil {
			t.Errorf("run(%v) = nil; want an error naming what is missing", args)
		}
	}
}
