package startup_test

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"io"
	"io/fs"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/orderflow/orderflow/pkg/dbtest"
	"github.com/orderflow/orderflow/pkg/startup"
	"github.com/orderflow/orderflow/pkg/telemetry"
)

func TestConfig_ParseFlags(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		args     []string
		wantAddr string
		wantErr  bool
	}{
		{name: "no args", wantAddr: ":8080"},
		{name: "program name only", args: []string{"shop"}, wantAddr: ":8080"},
		{name: "addr", args: []string{"shop", "-addr", "127.0.0.1:9"}, wantAddr: "127.0.0.1:9"},
		{name: "unknown flag", args: []string{"shop", "-nope"}, wantAddr: ":8080", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := startup.Config{Service: "shop", Addr: ":8080"}
			err := c.ParseFlags(tt.args, io.Discard)
			if (err != nil) != tt.wantErr || c.Addr != tt.wantAddr {
				t.Errorf("ParseFlags(%q) = %v, Addr %q; want error %v, Addr %q", tt.args, err, c.Addr, tt.wantErr, tt.wantAddr)
			}
		})
	}
}

// TestConfig_ParseFlagsHelp: -h lists -addr with the variable it overrides.
func TestConfig_ParseFlagsHelp(t *testing.T) {
	t.Parallel()
	var help bytes.Buffer
	c := startup.Config{Service: "shop"}
	if err := c.ParseFlags([]string{"shop", "-h"}, &help); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("ParseFlags(-h) = %v; want flag.ErrHelp", err)
	}
	if !strings.Contains(help.String(), "overrides SHOP_ADDR") {
		t.Errorf("help = %q; want it to name SHOP_ADDR", help.String())
	}
}

// shop is a command's configuration, which logs itself.
type shop struct{ startup.Config }

func (c shop) LogValue() slog.Value { return slog.GroupValue(slog.String("addr", c.Addr)) }

func schema(t *testing.T) func(string) (fs.FS, error) {
	return func(service string) (fs.FS, error) {
		if service != "shop" {
			t.Errorf("schema(%q); want the service's name, shop", service)
		}
		return fstest.MapFS{"00001_shelves.sql": {Data: []byte(
			"-- +goose Up\nCREATE TABLE shelves (id int PRIMARY KEY);\n-- +goose Down\nDROP TABLE shelves;\n")}}, nil
	}
}

func TestStart(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := startup.Config{Service: "shop", Database: "shop", Addr: ":7", DatabaseURL: dbtest.NewURL(t, nil), DBMaxConns: 2,
		LogLevel: "info", Telemetry: telemetry.Config{Service: "shop"}}
	var log bytes.Buffer
	p, err := startup.Start(ctx, &log, c, shop{c}, schema(t))
	if err != nil {
		t.Fatalf("Start = %v; want nil", err)
	}
	defer p.Close(ctx)
	if _, err := p.Pool.Exec(ctx, "INSERT INTO shelves VALUES (1)"); err != nil {
		t.Errorf("insert into the migrated table: %v", err)
	}
	if !strings.Contains(log.String(), `"msg":"starting"`) || !strings.Contains(log.String(), `"service":"shop"`) ||
		!strings.Contains(log.String(), `"config":{"addr":":7"}`) {
		t.Errorf("log = %s; want the starting line of shop with its config", log.String())
	}
}

func TestStart_Fails(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := startup.Config{Service: "shop", Database: "shop", DatabaseURL: "postgres://%zz", LogLevel: "info",
		Telemetry: telemetry.Config{Service: "shop"}}
	if _, err := startup.Start(ctx, io.Discard, c, shop{c}, schema(t)); err == nil {
		t.Error("Start(unparsable database URL) = nil; want an error")
	}
	noSchema := func(string) (fs.FS, error) { return nil, fs.ErrNotExist }
	if _, err := startup.Start(ctx, io.Discard, c, shop{c}, noSchema); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Start(no migrations) = %v; want fs.ErrNotExist", err)
	}
}
