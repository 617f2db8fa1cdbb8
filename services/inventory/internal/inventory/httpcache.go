package inventory

import (
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/orderflow/orderflow/pkg/web"
)

// cacheControl lets browsers and shared caches reuse a product read for a
// few seconds only: stock changes with every order, and a client that wants
// it exact revalidates with If-None-Match, which costs no body.
const cacheControl = "public, max-age=5"

// gzipMinBytes is the smallest body worth compressing: below about one
// packet the CPU buys nothing.
const gzipMinBytes = 1024

var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed) // the level is valid
	return zw
}}

// representation is one response body with its validator.
type representation struct {
	body []byte
	etag string
}

// newRepresentation encodes v exactly as it will be sent and derives a
// strong ETag from those bytes, so equal bodies get equal tags on every
// replica and any change to a field changes the tag.
func newRepresentation(v any) (representation, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return representation{}, err
	}
	b = append(b, '\n')
	sum := sha256.Sum256(b)
	return representation{body: b, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}, nil
}

// writeCacheable sends v as a cacheable 200 with ETag and Cache-Control, or
// a bodiless 304 when If-None-Match already names it. With compress, large
// bodies are gzipped for clients that accept it; the ETag stays the one of
// the uncompressed bytes and Vary: Accept-Encoding tells caches the two
// encodings apart.
func writeCacheable(w http.ResponseWriter, r *http.Request, v any, compress bool) {
	rep, err := newRepresentation(v)
	if err != nil {
		web.WriteProblem(w, web.NewProblem(http.StatusInternalServerError, "internal", "internal error"))
		return
	}
	h := w.Header()
	h.Set("ETag", rep.etag)
	h.Set("Cache-Control", cacheControl)
	if compress {
		h.Add("Vary", "Accept-Encoding")
	}
	if noneMatch(r.Header.Values("If-None-Match"), rep.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	h.Set("Content-Type", "application/json")
	if compress && len(rep.body) >= gzipMinBytes && acceptsGzip(r.Header.Values("Accept-Encoding")) {
		h.Set("Content-Encoding", "gzip")
		w.WriteHeader(http.StatusOK)
		zw := gzipWriters.Get().(*gzip.Writer)
		zw.Reset(w)
		_, _ = zw.Write(rep.body)
		_ = zw.Close()
		zw.Reset(nil)
		gzipWriters.Put(zw)
		return
	}
	h.Set("Content-Length", strconv.Itoa(len(rep.body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(rep.body)
}

// noneMatch reports whether an If-None-Match header (all its field lines)
// matches etag, so a GET may answer 304. RFC 9110 §13.1.2: "*" matches any
// current representation, and entity tags compare weakly (W/"x" matches
// "x"). A malformed member ends the parse: what was read so far counts.
func noneMatch(values []string, etag string) bool {
	for _, v := range values {
		for {
			v = strings.TrimLeft(v, " \t,")
			if v == "" {
				break
			}
			if v[0] == '*' {
				return true
			}
			v = strings.TrimPrefix(v, "W/")
			if len(v) < 2 || v[0] != '"' {
				break
			}
			end := strings.IndexByte(v[1:], '"')
			if end < 0 {
				break
			}
			if v[:end+2] == etag {
				return true
			}
			v = v[end+2:]
		}
	}
	return false
}

// acceptsGzip reports whether Accept-Encoding allows gzip: listed (or "*")
// without q=0.
func acceptsGzip(values []string) bool {
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			coding = strings.ToLower(strings.TrimSpace(coding))
			if coding != "gzip" && coding != "x-gzip" && coding != "*" {
				continue
			}
			if q, ok := strings.CutPrefix(strings.ReplaceAll(strings.ToLower(params), " ", ""), "q="); ok {
				if f, err := strconv.ParseFloat(q, 64); err == nil && f == 0 {
					continue
				}
			}
			return true
		}
	}
	return false
}
