package console

import (
	"net/http"

	"github.com/postern-dev/postern/authority"
)

// AWSPath takes AWS API calls from the console's pages, authenticated by
// the session cookie instead of SigV4.
const AWSPath = Prefix + "/api/aws"

// APIServer runs an AWS API call as a principal authenticated elsewhere;
// *api.Server is one.
type APIServer interface {
	ServeAs(w http.ResponseWriter, r *http.Request, p *authority.Principal, env authority.Env)
}

// AWSHandler answers POST AWSPath: any request the AWS API accepts (JSON
// 1.1 with X-Amz-Target, or an EC2 or IAM Query form), run by srv as the
// signed-in user, under the user's policies, audited in their name. A
// cross-site request is 403 CrossSiteRequestRefused and no session is 401
// NotSignedIn, both in the console's JSON; everything after that is
// answered by srv in the AWS protocol's own shape.
func (s *Server) AWSHandler(srv APIServer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodPost {
			h.Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "MethodNotAllowed", "message": "Use POST."})
			return
		}
		if err := s.RequireSameOrigin(r); err != nil {
			writeError(w, err)
			return
		}
		p, err := s.Authenticate(r)
		if err != nil {
			writeError(w, err)
			return
		}
		srv.ServeAs(w, r, p.Principal, authority.Env{
			SourceIP: SourceIP(r), UserAgent: r.UserAgent(), Time: s.now(), MFA: p.MFA,
		})
	})
}
