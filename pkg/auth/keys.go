package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keySet holds the issuer's signing keys (its JWKS) for go-oidc's
// verifier. It fetches the set when a token names a key id it does not
// hold (the provider rotated its keys) and when the set is older than
// maxAge (a withdrawn key stops working), but never more than once per
// minRefresh: go-oidc's own RemoteKeySet fetches again after every
// signature that fails, so each forged token would cost a request to the
// provider.
type keySet struct {
	url        string
	hc         *http.Client
	minRefresh time.Duration
	maxAge     time.Duration
	now        func() time.Time

	mu      sync.RWMutex
	keys    []jose.JSONWebKey
	fetched time.Time // last attempt, successful or not
	fetch   sync.Mutex
	fetches int // for tests
}

func newKeySet(url string, hc *http.Client) *keySet {
	if hc == nil {
		hc = http.DefaultClient
	}
	return &keySet{url: url, hc: hc, minRefresh: 10 * time.Second, maxAge: time.Hour, now: time.Now}
}

// VerifySignature implements oidc.KeySet: it returns the payload of jwt
// when one of the issuer's keys signed it. The verifier has already
// checked that the algorithm is RS256.
func (k *keySet) VerifySignature(ctx context.Context, jwt string) ([]byte, error) {
	jws, err := jose.ParseSigned(jwt, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("parse token: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("token must have exactly one signature")
	}
	kid := jws.Signatures[0].Header.KeyID
	keys, err := k.keysFor(ctx, kid)
	if err != nil {
		return nil, err
	}
	for _, key := range keys {
		if kid == "" || key.KeyID == kid {
			if payload, err := jws.Verify(&key); err == nil {
				return payload, nil
			}
		}
	}
	return nil, errors.New("no key of the issuer signed the token")
}

// keysFor returns the keys to try for a token naming kid, fetching the set
// first when it lacks kid or is stale and the last fetch is at least
// minRefresh ago. Concurrent callers share one fetch.
func (k *keySet) keysFor(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	if keys, ok := k.fresh(kid); ok {
		return keys, nil
	}
	k.fetch.Lock()
	defer k.fetch.Unlock()
	if keys, ok := k.fresh(kid); ok {
		return keys, nil // fetched while this caller waited
	}
	k.mu.RLock()
	keys, last := k.keys, k.fetched
	k.mu.RUnlock()
	if !last.IsZero() && k.now().Sub(last) < k.minRefresh {
		return keys, nil
	}
	got, err := k.get(ctx)
	k.mu.Lock()
	defer k.mu.Unlock()
	k.fetched = k.now()
	k.fetches++
	if err != nil {
		if len(k.keys) > 0 {
			return k.keys, nil // keep the keys we have while the provider is away
		}
		return nil, err
	}
	k.keys = got
	return got, nil
}

// fresh returns the keys when they are recent enough and hold kid.
func (k *keySet) fresh(kid string) ([]jose.JSONWebKey, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	if len(k.keys) == 0 || k.now().Sub(k.fetched) > k.maxAge {
		return nil, false
	}
	if kid == "" {
		return k.keys, true
	}
	for _, key := range k.keys {
		if key.KeyID == kid {
			return k.keys, true
		}
	}
	return nil, false
}

// get fetches the JWKS.
func (k *keySet) get(ctx context.Context) ([]jose.JSONWebKey, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, fmt.Errorf("fetch keys: %w", err)
	}
	resp, err := k.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch keys: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch keys: %s answered %d", k.url, resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&set); err != nil {
		return nil, fmt.Errorf("fetch keys: %w", err)
	}
	var keys []jose.JSONWebKey
	for _, key := range set.Keys {
		if key.Use == "" || key.Use == "sig" {
			keys = append(keys, key)
		}
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("fetch keys: %s holds no signing key", k.url)
	}
	return keys, nil
}
