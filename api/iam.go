package api

import (
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/authority"
)

const (
	iamVersion   = "2010-05-08"
	iamNamespace = "https://iam.amazonaws.com/doc/2010-05-08/"
)

func (s *Server) iamService() *service {
	svc := &service{
		key: iamVersion, proto: protoIAMQuery, signingName: "iam",
		eventSource: "iam.amazonaws.com", xmlns: iamNamespace,
		ops: map[string]*operation{
			"CreateUser":              {handle: createUser},
			"GetUser":                 {readOnly: true, handle: getUser},
			"ListUsers":               {readOnly: true, handle: listUsers},
			"DeleteUser":              {handle: deleteUser},
			"CreateAccessKey":         {handle: createAccessKey},
			"ListAccessKeys":          {readOnly: true, handle: listAccessKeys},
			"UpdateAccessKey":         {handle: updateAccessKey},
			"DeleteAccessKey":         {handle: deleteAccessKey},
			"CreateGroup":             {handle: createGroup},
			"GetGroup":                {readOnly: true, handle: getGroup},
			"ListGroups":              {readOnly: true, handle: listGroups},
			"DeleteGroup":             {handle: deleteGroup},
			"AddUserToGroup":          {handle: addUserToGroup},
			"RemoveUserFromGroup":     {handle: removeUserFromGroup},
			"ListGroupsForUser":       {readOnly: true, handle: listGroupsForUser},
			"PutUserPolicy":           {handle: putPolicy(postern.PolicyOwnerUser)},
			"PutGroupPolicy":          {handle: putPolicy(postern.PolicyOwnerGroup)},
			"GetUserPolicy":           {readOnly: true, handle: getPolicy(postern.PolicyOwnerUser)},
			"GetGroupPolicy":          {readOnly: true, handle: getPolicy(postern.PolicyOwnerGroup)},
			"ListUserPolicies":        {readOnly: true, handle: listPolicies(postern.PolicyOwnerUser)},
			"ListGroupPolicies":       {readOnly: true, handle: listPolicies(postern.PolicyOwnerGroup)},
			"DeleteUserPolicy":        {handle: deletePolicy(postern.PolicyOwnerUser)},
			"DeleteGroupPolicy":       {handle: deletePolicy(postern.PolicyOwnerGroup)},
			"SimulatePrincipalPolicy": {readOnly: true, handle: simulatePrincipalPolicy},
		},
	}
	for name, op := range consoleOps() {
		svc.ops[name] = op
	}
	return svc
}

type iamUser struct {
	Path       string `xml:"Path"`
	UserName   string `xml:"UserName"`
	UserID     string `xml:"UserId"`
	Arn        string `xml:"Arn"`
	CreateDate string `xml:"CreateDate"`
}

func (c *call) iamUser(u *postern.User) iamUser {
	return iamUser{"/", u.Name, u.ID, c.s.auth.UserARN(u.Name), iamTime(u.CreatedAt)}
}

type iamGroup struct {
	Path       string `xml:"Path"`
	GroupName  string `xml:"GroupName"`
	GroupID    string `xml:"GroupId"`
	Arn        string `xml:"Arn"`
	CreateDate string `xml:"CreateDate"`
}

func (c *call) iamGroup(g *postern.Group) iamGroup {
	return iamGroup{"/", g.Name, g.ID, c.s.auth.GroupARN(g.Name), iamTime(g.CreatedAt)}
}

func iamTime(t time.Time) string { return t.UTC().Format(time.RFC3339) }

// userParam returns UserName, or the caller's own name when it is absent
// and self is allowed (as IAM does for GetUser and the access key calls).
func (c *call) userParam(self bool) (string, error) {
	if name := c.str("UserName"); name != "" || !self {
		if name == "" {
			return "", postern.CodedErrorf(postern.KindInvalid, "ValidationError", "The request must contain the parameter UserName")
		}
		return name, authority.ValidateName("UserName", name, 64)
	}
	return c.principal.User.Name, nil
}

func (c *call) groupParam() (string, error) {
	name, err := c.required("GroupName")
	if err != nil {
		return "", err
	}
	return name, authority.ValidateName("GroupName", name, 128)
}

func createUser(c *call) (any, error) {
	name, err := c.userParam(false)
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:CreateUser", c.s.auth.UserARN(name), nil); err != nil {
		return nil, err
	}
	u, err := c.s.auth.CreateUser(c.ctx, name)
	if err != nil {
		return nil, err
	}
	c.response = map[string]any{"user": map[string]any{"userName": u.Name, "userId": u.ID, "arn": c.s.auth.UserARN(u.Name)}}
	return struct {
		User iamUser `xml:"User"`
	}{c.iamUser(u)}, nil
}

func getUser(c *call) (any, error) {
	name, err := c.userParam(true)
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:GetUser", c.s.auth.UserARN(name), nil); err != nil {
		return nil, err
	}
	u, err := c.s.auth.Store().GetUser(c.ctx, name)
	if err != nil {
		return nil, err
	}
	return struct {
		User iamUser `xml:"User"`
	}{c.iamUser(u)}, nil
}

func listUsers(c *call) (any, error) {
	if err := c.authorize("iam:ListUsers", "arn:aws:iam::"+c.s.auth.Config().Account+":user/*", nil); err != nil {
		return nil, err
	}
	users, err := c.s.auth.Store().ListUsers(c.ctx)
	if err != nil {
		return nil, err
	}
	out := struct {
		Users       []iamUser `xml:"Users>member"`
		IsTruncated bool      `xml:"IsTruncated"`
	}{Users: []iamUser{}}
	for i := range users {
		out.Users = append(out.Users, c.iamUser(&users[i]))
	}
	return out, nil
}

func deleteUser(c *call) (any, error) {
	name, err := c.userParam(false)
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:DeleteUser", c.s.auth.UserARN(name), nil); err != nil {
		return nil, err
	}
	return nil, c.s.auth.DeleteUser(c.ctx, name)
}

type iamAccessKey struct {
	UserName        string `xml:"UserName"`
	AccessKeyID     string `xml:"AccessKeyId"`
	Status          string `xml:"Status"`
	SecretAccessKey string `xml:"SecretAccessKey,omitempty"`
	CreateDate      string `xml:"CreateDate"`
}

func createAccessKey(c *call) (any, error) {
	name, err := c.userParam(true)
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:CreateAccessKey", c.s.auth.UserARN(name), nil); err != nil {
		return nil, err
	}
	k, secret, err := c.s.auth.CreateAccessKey(c.ctx, name)
	if err != nil {
		return nil, err
	}
	// The secret goes to the caller once and nowhere else.
	c.response = map[string]any{"accessKey": map[string]any{"userName": k.UserName, "accessKeyId": k.ID, "status": string(k.Status)}}
	return struct {
		AccessKey iamAccessKey `xml:"AccessKey"`
	}{iamAccessKey{k.UserName, k.ID, string(k.Status), secret, iamTime(k.CreatedAt)}}, nil
}

func listAccessKeys(c *call) (any, error) {
	name, err := c.userParam(true)
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:ListAccessKeys", c.s.auth.UserARN(name), nil); err != nil {
		return nil, err
	}
	if _, err := c.s.auth.Store().GetUser(c.ctx, name); err != nil {
		return nil, err
	}
	keys, err := c.s.auth.Store().ListAccessKeys(c.ctx, name)
	if err != nil {
		return nil, err
	}
	out := struct {
		Keys        []iamAccessKey `xml:"AccessKeyMetadata>member"`
		IsTruncated bool           `xml:"IsTruncated"`
	}{Keys: []iamAccessKey{}}
	for _, k := range keys {
		out.Keys = append(out.Keys, iamAccessKey{UserName: k.UserName, AccessKeyID: k.ID, Status: string(k.Status), CreateDate: iamTime(k.CreatedAt)})
	}
	return out, nil
}

func updateAccessKey(c *call) (any, error) {
	name, err := c.userParam(true)
	if err != nil {
		return nil, err
	}
	id, err := c.required("AccessKeyId")
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:UpdateAccessKey", c.s.auth.UserARN(name), nil); err != nil {
		return nil, err
	}
	return nil, c.s.auth.UpdateAccessKey(c.ctx, id, name, postern.AccessKeyStatus(c.str("Status")))
}

func deleteAccessKey(c *call) (any, error) {
	name, err := c.userParam(true)
	if err != nil {
		return nil, err
	}
	id, err := c.required("AccessKeyId")
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:DeleteAccessKey", c.s.auth.UserARN(name), nil); err != nil {
		return nil, err
	}
	return nil, c.s.auth.DeleteAccessKey(c.ctx, id, name)
}

func createGroup(c *call) (any, error) {
	name, err := c.groupParam()
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:CreateGroup", c.s.auth.GroupARN(name), nil); err != nil {
		return nil, err
	}
	g, err := c.s.auth.CreateGroup(c.ctx, name)
	if err != nil {
		return nil, err
	}
	c.response = map[string]any{"group": map[string]any{"groupName": g.Name, "groupId": g.ID}}
	return struct {
		Group iamGroup `xml:"Group"`
	}{c.iamGroup(g)}, nil
}

func getGroup(c *call) (any, error) {
	name, err := c.groupParam()
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:GetGroup", c.s.auth.GroupARN(name), nil); err != nil {
		return nil, err
	}
	g, err := c.s.auth.Store().GetGroup(c.ctx, name)
	if err != nil {
		return nil, err
	}
	members, err := c.s.auth.Store().ListGroupMembers(c.ctx, name)
	if err != nil {
		return nil, err
	}
	out := struct {
		Group       iamGroup  `xml:"Group"`
		Users       []iamUser `xml:"Users>member"`
		IsTruncated bool      `xml:"IsTruncated"`
	}{Group: c.iamGroup(g), Users: []iamUser{}}
	for i := range members {
		out.Users = append(out.Users, c.iamUser(&members[i]))
	}
	return out, nil
}

type groupList struct {
	Groups      []iamGroup `xml:"Groups>member"`
	IsTruncated bool       `xml:"IsTruncated"`
}

func (c *call) groupList(groups []postern.Group) groupList {
	out := groupList{Groups: []iamGroup{}}
	for i := range groups {
		out.Groups = append(out.Groups, c.iamGroup(&groups[i]))
	}
	return out
}

func listGroups(c *call) (any, error) {
	if err := c.authorize("iam:ListGroups", "arn:aws:iam::"+c.s.auth.Config().Account+":group/*", nil); err != nil {
		return nil, err
	}
	groups, err := c.s.auth.Store().ListGroups(c.ctx)
	if err != nil {
		return nil, err
	}
	return c.groupList(groups), nil
}

func listGroupsForUser(c *call) (any, error) {
	name, err := c.userParam(false)
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:ListGroupsForUser", c.s.auth.UserARN(name), nil); err != nil {
		return nil, err
	}
	if _, err := c.s.auth.Store().GetUser(c.ctx, name); err != nil {
		return nil, err
	}
	groups, err := c.s.auth.Store().ListGroupsForUser(c.ctx, name)
	if err != nil {
		return nil, err
	}
	return c.groupList(groups), nil
}

func deleteGroup(c *call) (any, error) {
	name, err := c.groupParam()
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:DeleteGroup", c.s.auth.GroupARN(name), nil); err != nil {
		return nil, err
	}
	return nil, c.s.auth.Store().DeleteGroup(c.ctx, name)
}

// membership handles AddUserToGroup and RemoveUserFromGroup.
func membership(action string, change func(c *call, group, user string) error) func(*call) (any, error) {
	return func(c *call) (any, error) {
		group, err := c.groupParam()
		if err != nil {
			return nil, err
		}
		user, err := c.userParam(false)
		if err != nil {
			return nil, err
		}
		c.addResource(c.s.auth.UserARN(user))
		if err := c.authorize(action, c.s.auth.GroupARN(group), nil); err != nil {
			return nil, err
		}
		return nil, change(c, group, user)
	}
}

var (
	addUserToGroup = membership("iam:AddUserToGroup", func(c *call, g, u string) error {
		return c.s.auth.Store().AddUserToGroup(c.ctx, g, u)
	})
	removeUserFromGroup = membership("iam:RemoveUserFromGroup", func(c *call, g, u string) error {
		return c.s.auth.Store().RemoveUserFromGroup(c.ctx, g, u)
	})
)

// policyOwner reads the owner (UserName or GroupName) and PolicyName and
// authorizes action on the owner.
func (c *call) policyOwner(kind postern.PolicyOwnerKind, verb string, needName bool) (owner, name string, err error) {
	action := "iam:" + verb + "UserPolic"
	arn := ""
	if kind == postern.PolicyOwnerUser {
		owner, err = c.userParam(false)
		arn = c.s.auth.UserARN(owner)
	} else {
		owner, err = c.groupParam()
		arn = c.s.auth.GroupARN(owner)
	}
	if err != nil {
		return "", "", err
	}
	if needName {
		if name, err = c.required("PolicyName"); err != nil {
			return "", "", err
		}
		if err = authority.ValidateName("PolicyName", name, 128); err != nil {
			return "", "", err
		}
	}
	if kind == postern.PolicyOwnerGroup {
		action = "iam:" + verb + "GroupPolic"
	}
	if needName {
		action += "y"
	} else {
		action += "ies"
	}
	return owner, name, c.authorize(action, arn, nil)
}

func putPolicy(kind postern.PolicyOwnerKind) func(*call) (any, error) {
	return func(c *call) (any, error) {
		doc, err := c.required("PolicyDocument")
		if err != nil {
			return nil, err
		}
		owner, name, err := c.policyOwner(kind, "Put", true)
		if err != nil {
			return nil, err
		}
		return nil, c.s.auth.PutPolicy(c.ctx, &postern.InlinePolicy{OwnerKind: kind, OwnerName: owner, Name: name, Document: doc})
	}
}

func getPolicy(kind postern.PolicyOwnerKind) func(*call) (any, error) {
	return func(c *call) (any, error) {
		owner, name, err := c.policyOwner(kind, "Get", true)
		if err != nil {
			return nil, err
		}
		p, err := c.s.auth.Store().GetPolicy(c.ctx, kind, owner, name)
		if err != nil {
			return nil, err
		}
		// IAM returns policy documents URL-encoded (RFC 3986).
		doc := strings.ReplaceAll(url.QueryEscape(p.Document), "+", "%20")
		if kind == postern.PolicyOwnerUser {
			return struct {
				UserName       string `xml:"UserName"`
				PolicyName     string `xml:"PolicyName"`
				PolicyDocument string `xml:"PolicyDocument"`
			}{owner, name, doc}, nil
		}
		return struct {
			GroupName      string `xml:"GroupName"`
			PolicyName     string `xml:"PolicyName"`
			PolicyDocument string `xml:"PolicyDocument"`
		}{owner, name, doc}, nil
	}
}

func listPolicies(kind postern.PolicyOwnerKind) func(*call) (any, error) {
	return func(c *call) (any, error) {
		owner, _, err := c.policyOwner(kind, "List", false)
		if err != nil {
			return nil, err
		}
		if kind == postern.PolicyOwnerUser {
			_, err = c.s.auth.Store().GetUser(c.ctx, owner)
		} else {
			_, err = c.s.auth.Store().GetGroup(c.ctx, owner)
		}
		if err != nil {
			return nil, err
		}
		ps, err := c.s.auth.Store().ListPolicies(c.ctx, kind, owner)
		if err != nil {
			return nil, err
		}
		out := struct {
			PolicyNames []string `xml:"PolicyNames>member"`
			IsTruncated bool     `xml:"IsTruncated"`
		}{PolicyNames: []string{}}
		for _, p := range ps {
			out.PolicyNames = append(out.PolicyNames, p.Name)
		}
		return out, nil
	}
}

func deletePolicy(kind postern.PolicyOwnerKind) func(*call) (any, error) {
	return func(c *call) (any, error) {
		owner, name, err := c.policyOwner(kind, "Delete", true)
		if err != nil {
			return nil, err
		}
		return nil, c.s.auth.Store().DeletePolicy(c.ctx, kind, owner, name)
	}
}

type evalResult struct {
	EvalActionName    string             `xml:"EvalActionName"`
	EvalResourceName  string             `xml:"EvalResourceName"`
	EvalDecision      string             `xml:"EvalDecision"`
	MatchedStatements []matchedStatement `xml:"MatchedStatements>member"`
}

// matchedStatement follows IAM's Statement shape; the Postern* elements are
// extensions that stock SDKs ignore and `postern policy simulate` prints.
type matchedStatement struct {
	SourcePolicyID   string `xml:"SourcePolicyId"`
	SourcePolicyType string `xml:"SourcePolicyType"`
	Sid              string `xml:"PosternStatementSid,omitempty"`
	Index            int    `xml:"PosternStatementIndex"`
}

func simulatePrincipalPolicy(c *call) (any, error) {
	src, err := c.required("PolicySourceArn")
	if err != nil {
		return nil, err
	}
	prefix := "arn:aws:iam::" + c.s.auth.Config().Account + ":user/"
	user, ok := strings.CutPrefix(src, prefix)
	if !ok || authority.ValidateName("PolicySourceArn", user, 64) != nil {
		return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidInput", "PolicySourceArn must be a user ARN of this account (%s<name>), got %q", prefix, src)
	}
	actions, err := c.list("ActionNames.member")
	if err != nil {
		return nil, err
	}
	if len(actions) == 0 {
		return nil, postern.CodedErrorf(postern.KindInvalid, "ValidationError", "The request must contain the parameter ActionNames")
	}
	resources, err := c.list("ResourceArns.member")
	if err != nil {
		return nil, err
	}
	if len(resources) == 0 {
		resources = []string{"*"}
	}
	keys, err := c.contextEntries()
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:SimulatePrincipalPolicy", src, nil); err != nil {
		return nil, err
	}
	out := struct {
		Results     []evalResult `xml:"EvaluationResults>member"`
		IsTruncated bool         `xml:"IsTruncated"`
	}{}
	for _, a := range actions {
		for _, r := range resources {
			d, err := c.s.auth.Simulate(c.ctx, user, authority.Access{Action: a, Resource: r, Context: keys}, authority.Env{})
			if err != nil {
				return nil, err
			}
			res := evalResult{EvalActionName: a, EvalResourceName: r, EvalDecision: d.Effect.String()}
			if d.PolicyName != "" {
				typ := "user"
				if strings.HasPrefix(d.PolicyName, "group/") {
					typ = "group"
				}
				res.MatchedStatements = []matchedStatement{{SourcePolicyID: d.PolicyName, SourcePolicyType: typ, Sid: d.Sid, Index: d.StatementIndex}}
			}
			out.Results = append(out.Results, res)
		}
	}
	return out, nil
}

// contextEntries parses ContextEntries.member.N.{ContextKeyName,
// ContextKeyValues.member.M}.
func (c *call) contextEntries() (map[string][]string, error) {
	idx, err := c.indices("ContextEntries.member")
	if err != nil {
		return nil, err
	}
	keys := map[string][]string{}
	for _, n := range idx {
		p := "ContextEntries.member." + strconv.Itoa(n)
		name := c.str(p + ".ContextKeyName")
		if name == "" {
			return nil, postern.CodedErrorf(postern.KindInvalid, "InvalidInput", "%s.ContextKeyName is missing", p)
		}
		values, err := c.list(p + ".ContextKeyValues.member")
		if err != nil {
			return nil, err
		}
		keys[name] = append(keys[name], values...)
	}
	return keys, nil
}
