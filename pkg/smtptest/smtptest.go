// Package smtptest runs a real SMTP server inside a test process, so code
// that sends e-mail is tested over the actual protocol (EHLO/HELO, MAIL FROM,
// RCPT TO, DATA, RSET, NOOP, QUIT) on 127.0.0.1 instead of against a mock.
// It records every message it accepts and can be told to reject DATA or to
// go away entirely, to test how a sender copes with a mail server that fails.
package smtptest

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/mail"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"
)

// Message is one e-mail the server accepted.
type Message struct {
	From string
	To   []string
	// Data is the message as sent after DATA (headers and body, CRLF line
	// endings, dot-stuffing removed).
	Data []byte
}

// Header parses the message's header; a malformed message gives an empty one.
func (m Message) Header() mail.Header {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return mail.Header{}
	}
	return msg.Header
}

// Body returns the message body after the header.
func (m Message) Body() string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	b, _ := io.ReadAll(msg.Body)
	return string(b)
}

// Server is an SMTP server listening on 127.0.0.1 with a random port.
type Server struct {
	ln       net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	msgs     []Message
	failing  bool
	rejected int
	closed   bool
	conns    map[net.Conn]struct{}
	accepted int
	discard  bool // a sink: accept every message, keep none
}

// Start starts a server and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("smtptest: listen: %v", err)
	}
	s := &Server{ln: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go s.serve()
	t.Cleanup(s.Close)
	return s
}

// NewSink starts a server outside a test that accepts every message and
// keeps none, for load programs whose services need an SMTP peer but whose
// measurement does not need the mail. Close it when done.
func NewSink() (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("smtptest: listen: %w", err)
	}
	s := &Server{ln: ln, conns: map[net.Conn]struct{}{}, discard: true}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Addr is the host:port to send mail to.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Messages returns a copy of the messages accepted so far, in order.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.msgs))
	copy(out, s.msgs)
	return out
}

// FailData makes the server answer DATA with "451 local error" while fail is
// true: a temporary failure, so the sender keeps the message and retries.
func (s *Server) FailData(fail bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing = fail
}

// Rejected counts the DATA commands refused because of FailData.
func (s *Server) Rejected() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rejected
}

// Accepted counts the connections the server has accepted.
func (s *Server) Accepted() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.accepted
}

// DropConnections closes every open connection and goes on listening, as
// a server does to connections idle past its timeout.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		_ = c.Close()
	}
}

// Close stops listening and drops every open connection; later dials are
// refused. It is safe to call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	_ = s.ln.Close()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
}

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			_ = c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.accepted++
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.session(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			_ = c.Close()
		}()
	}
}

// session speaks SMTP on one connection until QUIT or an I/O error. A
// generous deadline keeps a stuck client from holding the goroutine forever.
func (s *Server) session(c net.Conn) {
	_ = c.SetDeadline(time.Now().Add(time.Minute))
	ss := &session{srv: s, tp: textproto.NewConn(c)}
	if !ss.reply("220 smtptest ESMTP ready") {
		return
	}
	for {
		line, err := ss.tp.ReadLine()
		if err != nil {
			return
		}
		verb, arg, _ := strings.Cut(line, " ")
		if !ss.command(strings.ToUpper(verb), arg) {
			return
		}
	}
}

// session is the state of one SMTP conversation: the greeting, then the
// transaction under way (MAIL, RCPT…, DATA).
type session struct {
	srv     *Server
	tp      *textproto.Conn
	greeted bool
	inMail  bool
	from    string
	rcpts   []string
}

// reply sends lines; false means the connection failed.
func (ss *session) reply(lines ...string) bool {
	for _, l := range lines {
		if err := ss.tp.PrintfLine("%s", l); err != nil {
			return false
		}
	}
	return true
}

// reset ends the transaction under way, as RSET and a new greeting do.
func (ss *session) reset() { ss.from, ss.inMail, ss.rcpts = "", false, nil }

// command answers one command (verb in upper case); false ends the
// session: QUIT, or an I/O error.
func (ss *session) command(verb, arg string) bool {
	switch verb {
	case "EHLO":
		ss.greeted = true
		ss.reset()
		return ss.reply("250-smtptest greets "+arg, "250-8BITMIME", "250 SMTPUTF8")
	case "HELO":
		ss.greeted = true
		ss.reset()
		return ss.reply("250 smtptest greets " + arg)
	case "MAIL":
		return ss.mail(arg)
	case "RCPT":
		return ss.rcpt(arg)
	case "DATA":
		return ss.data()
	case "RSET":
		ss.reset()
		return ss.reply("250 2.0.0 ok")
	case "NOOP":
		return ss.reply("250 2.0.0 ok")
	case "QUIT":
		ss.reply("221 2.0.0 bye")
		return false
	default:
		return ss.reply("502 5.5.2 command not implemented")
	}
}

func (ss *session) mail(arg string) bool {
	addr, ok := pathArg(arg, "FROM:")
	switch {
	case !ss.greeted:
		return ss.reply("503 5.5.1 say EHLO or HELO first")
	case ss.inMail:
		return ss.reply("503 5.5.1 nested MAIL command")
	case !ok:
		return ss.reply("501 5.5.4 syntax: MAIL FROM:<address>")
	}
	ss.from, ss.inMail = addr, true
	return ss.reply("250 2.1.0 ok")
}

func (ss *session) rcpt(arg string) bool {
	addr, ok := pathArg(arg, "TO:")
	switch {
	case !ss.inMail:
		return ss.reply("503 5.5.1 need MAIL before RCPT")
	case !ok || addr == "":
		return ss.reply("501 5.5.4 syntax: RCPT TO:<address>")
	}
	ss.rcpts = append(ss.rcpts, addr)
	return ss.reply("250 2.1.5 ok")
}

// data takes the message of the transaction, unless FailData has the
// server refuse it.
func (ss *session) data() bool {
	if len(ss.rcpts) == 0 {
		return ss.reply("503 5.5.1 need RCPT before DATA")
	}
	if ss.srv.reject() {
		ss.reset()
		return ss.reply("451 4.3.0 local error in processing")
	}
	if !ss.reply("354 end data with <CR><LF>.<CR><LF>") {
		return false
	}
	data, err := io.ReadAll(ss.tp.DotReader())
	if err != nil {
		return false
	}
	ss.srv.keep(Message{From: ss.from, To: ss.rcpts, Data: bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))})
	ss.reset()
	return ss.reply("250 2.0.0 ok: queued")
}

// reject reports whether FailData has the server refuse messages now, and
// counts the refusal.
func (s *Server) reject() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failing {
		s.rejected++
	}
	return s.failing
}

// keep records msg, unless the server discards what it receives.
func (s *Server) keep(msg Message) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.discard {
		s.msgs = append(s.msgs, msg)
	}
}

// pathArg parses "FROM:<a@b> PARAMS" (or TO:) and returns the address inside
// the angle brackets; MAIL FROM:<> (the null sender) is valid.
func pathArg(arg, prefix string) (string, bool) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", false
	}
	rest := strings.TrimSpace(arg[len(prefix):])
	if !strings.HasPrefix(rest, "<") {
		return "", false
	}
	end := strings.IndexByte(rest, '>')
	if end < 0 {
		return "", false
	}
	return rest[1:end], true
}
