package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRun_Usage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		wantErr string
	}{
		{"no credentials", []string{"token"}, nil, "-email and -password"},
		{"no password", []string{"token", "-email", "a@example.com"}, nil, "-email and -password"},
		{"unknown flag", []string{"token", "-nope"}, nil, "not defined"},
		{"missing CA file", []string{"token", "-cacert", "/nonexistent/ca.pem"}, map[string]string{"EMAIL": "a@example.com", "PASSWORD": "p"}, "-cacert"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, func(k string) string { return tt.env[k] }, &stdout, &stderr)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("run(%v) = %v; want an error mentioning %q", tt.args, err, tt.wantErr)
			}
			if stdout.Len() != 0 {
				t.Errorf("stdout = %q; want nothing on failure", stdout.String())
			}
		})
	}
}
