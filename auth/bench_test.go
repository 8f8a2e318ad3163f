package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.uber.org/zap"

	"example.com/app/internal/config"
	"example.com/app/internal/service"
	"example.com/app/internal/service/servicetest"
)

// BenchmarkLogin: a successful POST /login through the whole auth service.
// bcrypt's cost dominates, on purpose: it is what makes guessing slow.
func BenchmarkLogin(b *testing.B) {
	private, _, _ := servicetest.KeyFiles(b)
	cfg, err := config.Parse([]string{"auth"}, func(k string) string {
		return map[string]string{"JWT_PRIVATE_KEY_FILE": private, "DEMO_USER": "true"}[k]
	}, io.Discard, config.Login)
	if err != nil {
		b.Fatal(err)
	}
	app, err := service.New(auth(), cfg, zap.NewNop(), zap.NewNop())
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/login", nil)
	req.SetBasicAuth("user", "password")
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		app.API.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("POST /login = %d %s", rec.Code, rec.Body)
		}
	}
}
