package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
)

// MaxBodyBytes is the largest request body the public API accepts (64 KiB).
const MaxBodyBytes = 64 << 10

// Decode reads one JSON object from r's body into dst. It enforces the API
// contract: Content-Type application/json (415 otherwise), at most maxBytes
// (413), no unknown fields and exactly one value (400). The returned error is
// a *Problem ready to be written.
func Decode(r *http.Request, maxBytes int64, dst any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
			return NewProblem(http.StatusUnsupportedMediaType, "unsupported_media_type",
				"Content-Type must be application/json")
		}
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBytes+1))
	if err != nil {
		return NewProblem(http.StatusBadRequest, "bad_request", "could not read the request body")
	}
	if int64(len(body)) > maxBytes {
		return NewProblem(http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("the request body is larger than %d bytes", maxBytes))
	}
	return DecodeBytes(body, dst)
}

// DecodeBytes decodes one JSON object from body into dst with the rules of
// Decode, minus the transport checks. It is split out so fuzzing can reach it.
func DecodeBytes(body []byte, dst any) error {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return decodeProblem(err)
	}
	if dec.More() {
		return NewProblem(http.StatusBadRequest, "bad_json", "the body must hold a single JSON object")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return NewProblem(http.StatusBadRequest, "bad_json", "the body must hold a single JSON object")
	}
	return nil
}

func decodeProblem(err error) *Problem {
	var syntaxErr *json.SyntaxError
	var typeErr *json.UnmarshalTypeError
	switch {
	case errors.Is(err, io.EOF):
		return NewProblem(http.StatusBadRequest, "bad_json", "the request body is empty")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return NewProblem(http.StatusBadRequest, "bad_json", "the request body is truncated JSON")
	case errors.As(err, &syntaxErr):
		return NewProblem(http.StatusBadRequest, "bad_json",
			fmt.Sprintf("malformed JSON at byte %d", syntaxErr.Offset))
	case errors.As(err, &typeErr):
		field := typeErr.Field
		if field == "" {
			return NewProblem(http.StatusBadRequest, "bad_json", "the body must be a JSON object")
		}
		return NewProblem(http.StatusBadRequest, "validation_failed",
			fmt.Sprintf("field %q must be a %s", field, typeErr.Type)).
			With("errors", map[string]string{field: "must be a " + typeErr.Type.String()})
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		name := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
		return NewProblem(http.StatusBadRequest, "unknown_field", fmt.Sprintf("unknown field %q", name)).
			With("errors", map[string]string{name: "unknown field"})
	default:
		return NewProblem(http.StatusBadRequest, "bad_json", "the request body is not valid JSON")
	}
}

// ValidationProblem turns a field→problem map into a 400 problem, or nil when
// the map is empty.
func ValidationProblem(problems map[string]string) error {
	if len(problems) == 0 {
		return nil
	}
	detail := "the request has invalid fields"
	if len(problems) == 1 {
		for f, p := range problems {
			detail = f + ": " + p
		}
	}
	return NewProblem(http.StatusBadRequest, "validation_failed", detail).With("errors", problems)
}
