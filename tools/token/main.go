// Command token signs a customer in to Orderflow without a browser and
// prints the access token alone on the last line of stdout, for curl, k6
// and tests:
//
//	go run ./tools/token -email ada@example.com -password 'correct horse'
//	curl -H "Authorization: Bearer $(go run ./tools/token -email … -password …)" …
//
// It runs the authorization code flow with PKCE (S256) of the public client
// orderflow-cli against Ory Hydra and the identity login app. EMAIL,
// PASSWORD and OIDC_ISSUER are read when the flags are not given. Errors go
// to stderr, with exit status 1.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"time"

	"github.com/orderflow/orderflow/tools/token/login"
)

func main() {
	if err := run(context.Background(), os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "token:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()

	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	issuer := fs.String("issuer", or(getenv("OIDC_ISSUER"), login.DefaultIssuer), "OpenID Connect issuer URL (env OIDC_ISSUER)")
	email := fs.String("email", getenv("EMAIL"), "customer e-mail (env EMAIL)")
	password := fs.String("password", getenv("PASSWORD"), "customer password (env PASSWORD)")
	client := fs.String("client", login.DefaultClientID, "OAuth 2.0 client id")
	redirect := fs.String("redirect", login.DefaultRedirectURL, "the client's registered redirect URI")
	scope := fs.String("scope", login.DefaultScope, "scopes to ask for, space-separated")
	audience := fs.String("audience", login.DefaultAudience, "access token audience to ask for")
	caCert := fs.String("cacert", "", "PEM file of the CA to trust for an https issuer")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	verbose := fs.Bool("v", false, "print the token's type, scopes and expiry to stderr")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *email == "" || *password == "" {
		return errors.New("-email and -password (or EMAIL and PASSWORD) are required")
	}
	hc, err := httpClient(*caCert, *timeout)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	tok, err := login.Login(ctx, hc, login.Config{
		Issuer: *issuer, ClientID: *client, RedirectURL: *redirect,
		Scopes: strings.Fields(*scope), Audience: *audience,
	}, *email, *password)
	if err != nil {
		return err
	}
	if *verbose {
		fmt.Fprintf(stderr, "token_type: %s\nscope: %v\nexpires: %s (in %s)\nrefresh_token: %t\n",
			tok.Type(), tok.Extra("scope"), tok.Expiry.Format(time.RFC3339),
			time.Until(tok.Expiry).Round(time.Second), tok.RefreshToken != "")
	}
	fmt.Fprintln(stdout, tok.AccessToken)
	return nil
}

// httpClient returns a client that trusts the CA in caFile too, when set.
func httpClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("-cacert: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("-cacert: %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{Transport: tr, Timeout: timeout}, nil
}

func or(v, def string) string {
	if v != "" {
		return v
	}
	return def
}
