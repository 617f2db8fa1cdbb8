package smtptest_test

import (
	"errors"
	"net/smtp"
	"net/textproto"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/pkg/smtptest"
)

func TestServer_SendMail(t *testing.T) {
	s := smtptest.Start(t)
	body := "From: a@example.com\r\nTo: b@example.com\r\nSubject: hi\r\n\r\nline one\r\n.leading dot\r\n"
	if err := smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"b@example.com", "c@example.com"}, []byte(body)); err != nil {
		t.Fatalf("SendMail = %v; want nil", err)
	}
	msgs := s.Messages()
	if len(msgs) != 1 {
		t.Fatalf("Messages() has %d; want 1", len(msgs))
	}
	m := msgs[0]
	if m.From != "a@example.com" || strings.Join(m.To, ",") != "b@example.com,c@example.com" {
		t.Errorf("envelope = %q -> %q; want a@example.com -> b,c", m.From, m.To)
	}
	if got := m.Header().Get("Subject"); got != "hi" {
		t.Errorf("Subject = %q; want hi", got)
	}
	if got := m.Body(); got != "line one\r\n.leading dot\r\n" {
		t.Errorf("Body() = %q; want the dot-unstuffed body", got)
	}
}

func TestServer_Commands(t *testing.T) {
	s := smtptest.Start(t)
	c, err := textproto.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	expect := func(code int) {
		t.Helper()
		if _, _, err := c.ReadResponse(code); err != nil {
			t.Fatalf("want %d: %v", code, err)
		}
	}
	cmd := func(code int, format string, args ...any) {
		t.Helper()
		if _, err := c.Cmd(format, args...); err != nil {
			t.Fatal(err)
		}
		expect(code)
	}
	expect(220)
	cmd(503, "MAIL FROM:<a@example.com>")
	cmd(250, "HELO test")
	cmd(250, "NOOP")
	cmd(503, "RCPT TO:<b@example.com>")
	cmd(250, "MAIL FROM:<a@example.com>")
	cmd(250, "RCPT TO:<b@example.com>")
	cmd(250, "RSET")
	cmd(503, "DATA")
	cmd(502, "VRFY b")
	cmd(221, "QUIT")
	if n := len(s.Messages()); n != 0 {
		t.Errorf("Messages() has %d; want 0", n)
	}
}

func TestServer_FailData(t *testing.T) {
	s := smtptest.Start(t)
	s.FailData(true)
	err := smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"b@example.com"}, []byte("Subject: x\r\n\r\nx\r\n"))
	var te *textproto.Error
	if !errors.As(err, &te) || te.Code != 451 {
		t.Fatalf("SendMail = %v; want a 451 reply", err)
	}
	if s.Rejected() != 1 || len(s.Messages()) != 0 {
		t.Fatalf("Rejected() = %d, Messages() = %d; want 1, 0", s.Rejected(), len(s.Messages()))
	}
	s.FailData(false)
	if err := smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"b@example.com"}, []byte("Subject: x\r\n\r\nx\r\n")); err != nil {
		t.Fatalf("SendMail after FailData(false) = %v; want nil", err)
	}
	if len(s.Messages()) != 1 {
		t.Fatalf("Messages() = %d; want 1", len(s.Messages()))
	}
}

func TestServer_Close(t *testing.T) {
	s := smtptest.Start(t)
	s.Close()
	if err := smtp.SendMail(s.Addr(), nil, "a@example.com", []string{"b@example.com"}, []byte("x\r\n")); err == nil {
		t.Fatal("SendMail to a closed server = nil; want an error")
	}
}
