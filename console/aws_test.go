package console

import (
	"net/http"
	"testing"

	"github.com/postern-dev/postern/authority"
)

// fakeAPI notes what AWSHandler hands on.
type fakeAPI struct {
	p   *authority.Principal
	env authority.Env
}

func (a *fakeAPI) ServeAs(w http.ResponseWriter, r *http.Request, p *authority.Principal, env authority.Env) {
	a.p, a.env = p, env
	w.WriteHeader(http.StatusTeapot)
}

func TestAWSHandler(t *testing.T) {
	f := newFixture(t)
	cookie := f.signIn("alice", passwords["alice"], "").cookie(t)
	api := &fakeAPI{}
	f.h = f.srv.AWSHandler(api)

	f.do(http.MethodPost, AWSPath, "{}", nil, nil).want(t, http.StatusUnauthorized, "NotSignedIn")
	f.do(http.MethodPost, AWSPath, "{}", cookie, map[string]string{"Origin": "https://evil.test"}).
		want(t, http.StatusForbidden, "CrossSiteRequestRefused")
	f.do(http.MethodPost, AWSPath, "{}", cookie, map[string]string{"Origin": "", "Sec-Fetch-Site": "same-site"}).
		want(t, http.StatusForbidden, "CrossSiteRequestRefused")
	if ev := f.lastEvent("ConsoleRequest"); ev["errorCode"] != "CrossSiteRequestRefused" {
		t.Errorf("refused cross-site call audited as %v", ev)
	}
	f.do(http.MethodGet, AWSPath, "", cookie, nil).want(t, http.StatusMethodNotAllowed, "MethodNotAllowed")
	if api.p != nil {
		t.Fatalf("a refused request reached the API as %v", api.p)
	}

	r := f.do(http.MethodPost, AWSPath, "{}", cookie, map[string]string{"User-Agent": "console-test"})
	if r.Code != http.StatusTeapot || api.p == nil {
		t.Fatalf("a signed-in same-origin call: %d %s; want it handed to the API", r.Code, r.Body)
	}
	if api.p.User.Name != "alice" || api.p.AccessKeyID != "" || api.p.MFA {
		t.Errorf("principal %+v", api.p)
	}
	if api.env.SourceIP.String() != "192.0.2.10" || api.env.UserAgent != "console-test" || !api.env.Time.Equal(f.clock.now()) {
		t.Errorf("env %+v", api.env)
	}
	if r.Header().Get("Cache-Control") != "no-store" || r.Header().Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("headers %v", r.Header())
	}
}
