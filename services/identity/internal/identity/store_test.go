package identity

import (
	"context"
	"errors"
	"testing"

	"github.com/orderflow/orderflow/migrations"
	"github.com/orderflow/orderflow/pkg/dbtest"
)

func TestStore_CreateAndByEmail(t *testing.T) {
	t.Parallel()
	fsys, err := migrations.For("identity")
	if err != nil {
		t.Fatal(err)
	}
	s := NewStore(dbtest.NewPool(t, fsys))
	ctx := context.Background()

	ada := Customer{ID: NewCustomerID(), Email: "ada@example.com", Name: "Ada", PasswordHash: "$argon2id$x"}
	created, err := s.Create(ctx, ada)
	if err != nil {
		t.Fatalf("Create = %v", err)
	}
	if created.CreatedAt.IsZero() {
		t.Error("Create returned no created_at")
	}
	got, err := s.ByEmail(ctx, "ada@example.com")
	if err != nil || got.ID != ada.ID || got.PasswordHash != ada.PasswordHash || got.Name != "Ada" {
		t.Errorf("ByEmail = %+v, %v; want %+v", got, err, ada)
	}

	dup := Customer{ID: NewCustomerID(), Email: "ada@example.com", Name: "Other", PasswordHash: "h"}
	if _, err := s.Create(ctx, dup); !errors.Is(err, ErrEmailTaken) {
		t.Errorf("Create(same e-mail) = %v; want ErrEmailTaken", err)
	}
	sameID := Customer{ID: ada.ID, Email: "other@example.com", Name: "Other", PasswordHash: "h"}
	if _, err := s.Create(ctx, sameID); err == nil || errors.Is(err, ErrEmailTaken) {
		t.Errorf("Create(same id) = %v; want an error that is not ErrEmailTaken", err)
	}
	// The table refuses what the service must never write.
	upper := Customer{ID: NewCustomerID(), Email: "Bob@example.com", Name: "Bob", PasswordHash: "h"}
	if _, err := s.Create(ctx, upper); err == nil {
		t.Error("Create(upper-case e-mail) = nil; want the check constraint to refuse it")
	}
	if _, err := s.ByEmail(ctx, "nobody@example.com"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ByEmail(unknown) = %v; want ErrNotFound", err)
	}
}
