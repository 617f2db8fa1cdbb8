// Command healthcheck is the container health probe for Orderflow's images.
// The runtime image is distroless (no shell, no curl), so each image carries
// this small static binary instead: `healthcheck URL` exits 0 when URL
// answers 200 within two seconds, and 1 otherwise.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"time"
)

// timeout bounds the whole probe, so a hung service fails its health check
// instead of piling up probes.
const timeout = 2 * time.Second

func main() {
	if err := run(context.Background(), os.Args, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "healthcheck:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) != 2 || args[1] == "" {
		return errors.New("usage: healthcheck URL")
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, args[1], nil)
	if err != nil {
		return fmt.Errorf("bad URL: %w", err)
	}
	// A fresh client with no proxy: the probe targets the container itself,
	// and an HTTP_PROXY set for the service must not intercept it.
	client := &http.Client{Transport: &http.Transport{Proxy: nil}}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Reading a bounded part of the body lets the server finish its write
	// cleanly; the body itself (the readiness report) goes to the log.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s answered %s: %s", args[1], resp.Status, body)
	}
	fmt.Fprintf(stdout, "%s %s\n", resp.Status, body)
	return nil
}
