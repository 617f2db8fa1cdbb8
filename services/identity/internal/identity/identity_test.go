package identity

import (
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestSignUp_Normalize(t *testing.T) {
	t.Parallel()
	ok := SignUp{Email: "ada@example.com", Password: "long enough", Name: "Ada"}
	tests := []struct {
		name         string
		in           SignUp
		want         SignUp
		wantProblems []string // fields
	}{
		{"valid", ok, ok, nil},
		{"e-mail lower-cased, name trimmed",
			SignUp{Email: "Ada.Lovelace@Example.COM", Password: "long enough", Name: "  Ada  "},
			SignUp{Email: "ada.lovelace@example.com", Password: "long enough", Name: "Ada"}, nil},
		{"display-name form", SignUp{Email: "Ada <ada@example.com>", Password: "long enough", Name: "Ada"}, SignUp{}, []string{"email"}},
		{"angle brackets", SignUp{Email: "<ada@example.com>", Password: "long enough", Name: "Ada"}, SignUp{}, []string{"email"}},
		{"no domain", SignUp{Email: "ada", Password: "long enough", Name: "Ada"}, SignUp{}, []string{"email"}},
		{"surrounding spaces", SignUp{Email: " ada@example.com", Password: "long enough", Name: "Ada"}, SignUp{}, []string{"email"}},
		{"too long", SignUp{Email: strings.Repeat("a", 250) + "@x.io", Password: "long enough", Name: "Ada"}, SignUp{}, []string{"email"}},
		{"password of 9", SignUp{Email: "ada@example.com", Password: "123456789", Name: "Ada"}, SignUp{}, []string{"password"}},
		{"password of 10 runes, more bytes", SignUp{Email: "ada@example.com", Password: "ééééééééé1", Name: "Ada"},
			SignUp{Email: "ada@example.com", Password: "ééééééééé1", Name: "Ada"}, nil},
		{"password over 1024 bytes", SignUp{Email: "ada@example.com", Password: strings.Repeat("p", 1025), Name: "Ada"}, SignUp{}, []string{"password"}},
		{"no name", SignUp{Email: "ada@example.com", Password: "long enough", Name: " "}, SignUp{}, []string{"name"}},
		{"control character in name", SignUp{Email: "ada@example.com", Password: "long enough", Name: "A\nda"}, SignUp{}, []string{"name"}},
		{"everything wrong", SignUp{}, SignUp{}, []string{"email", "name", "password"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := tt.in.Normalize()
			var fields []string
			for f := range problems {
				fields = append(fields, f)
			}
			slices.Sort(fields)
			if diff := cmp.Diff(tt.wantProblems, fields); diff != "" {
				t.Errorf("Normalize(%+v) problems %v (-want +got):\n%s", tt.in, problems, diff)
			}
			if len(problems) == 0 && got != tt.want {
				t.Errorf("Normalize(%+v) = %+v; want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestNewCustomerID(t *testing.T) {
	t.Parallel()
	re := regexp.MustCompile(`^cus_[a-z2-7]{26}$`)
	seen := map[string]bool{}
	for range 1000 {
		id := NewCustomerID()
		if !re.MatchString(id) {
			t.Fatalf("NewCustomerID() = %q; want cus_ and 26 base32 characters", id)
		}
		if seen[id] {
			t.Fatalf("NewCustomerID() repeated %q", id)
		}
		seen[id] = true
	}
}
