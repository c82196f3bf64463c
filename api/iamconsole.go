package api

import (
	"encoding/base64"

	"github.com/postern-dev/postern"
	"github.com/postern-dev/postern/authority"
)

// This file serves IAM's console-credential operations: login profiles
// (console passwords) and virtual MFA devices. Passwords, seeds and codes
// never reach c.response, and the audit trail redacts them from the
// request parameters.

// consoleOps returns the operations to add to the IAM service.
func consoleOps() map[string]*operation {
	return map[string]*operation{
		"CreateLoginProfile":     {handle: createLoginProfile},
		"GetLoginProfile":        {readOnly: true, handle: getLoginProfile},
		"UpdateLoginProfile":     {handle: updateLoginProfile},
		"DeleteLoginProfile":     {handle: deleteLoginProfile},
		"CreateVirtualMFADevice": {handle: createVirtualMFADevice},
		"EnableMFADevice":        {handle: enableMFADevice},
		"DeactivateMFADevice":    {handle: deactivateMFADevice},
		"DeleteVirtualMFADevice": {handle: deleteVirtualMFADevice},
		"ListMFADevices":         {readOnly: true, handle: listMFADevices},
	}
}

type iamLoginProfile struct {
	UserName              string `xml:"UserName"`
	CreateDate            string `xml:"CreateDate"`
	PasswordResetRequired bool   `xml:"PasswordResetRequired"`
}

// userAction reads UserName (the caller's own when self allows it) and
// authorizes action on the user.
func (c *call) userAction(action string, self bool) (string, error) {
	name, err := c.userParam(self)
	if err != nil {
		return "", err
	}
	return name, c.authorize(action, c.s.auth.UserARN(name), nil)
}

func createLoginProfile(c *call) (any, error) {
	name, err := c.userAction("iam:CreateLoginProfile", true)
	if err != nil {
		return nil, err
	}
	pw, err := c.required("Password")
	if err != nil {
		return nil, err
	}
	p, err := c.s.auth.CreateLoginProfile(c.ctx, name, pw)
	if err != nil {
		return nil, err
	}
	c.response = map[string]any{"loginProfile": map[string]any{"userName": p.UserName, "passwordResetRequired": false}}
	return struct {
		LoginProfile iamLoginProfile `xml:"LoginProfile"`
	}{iamLoginProfile{p.UserName, iamTime(p.CreatedAt), false}}, nil
}

func getLoginProfile(c *call) (any, error) {
	name, err := c.userAction("iam:GetLoginProfile", true)
	if err != nil {
		return nil, err
	}
	p, err := c.s.auth.Store().GetLoginProfile(c.ctx, name)
	if err != nil {
		return nil, err
	}
	return struct {
		LoginProfile iamLoginProfile `xml:"LoginProfile"`
	}{iamLoginProfile{p.UserName, iamTime(p.CreatedAt), false}}, nil
}

func updateLoginProfile(c *call) (any, error) {
	name, err := c.userAction("iam:UpdateLoginProfile", true)
	if err != nil {
		return nil, err
	}
	pw, err := c.required("Password")
	if err != nil {
		return nil, err
	}
	return nil, c.s.auth.UpdateLoginProfile(c.ctx, name, pw)
}

func deleteLoginProfile(c *call) (any, error) {
	name, err := c.userAction("iam:DeleteLoginProfile", true)
	if err != nil {
		return nil, err
	}
	return nil, c.s.auth.Store().DeleteLoginProfile(c.ctx, name)
}

func createVirtualMFADevice(c *call) (any, error) {
	name, err := c.required("VirtualMFADeviceName")
	if err != nil {
		return nil, err
	}
	if err := authority.ValidateName("VirtualMFADeviceName", name, 226); err != nil {
		return nil, err
	}
	serial := c.s.auth.MFAARN(name)
	if err := c.authorize("iam:CreateVirtualMFADevice", serial, nil); err != nil {
		return nil, err
	}
	d, seed, err := c.s.auth.CreateVirtualMFADevice(c.ctx, name)
	if err != nil {
		return nil, err
	}
	c.response = map[string]any{"virtualMFADevice": map[string]any{"serialNumber": d.SerialNumber}}
	// IAM's Base32StringSeed is a blob: the base32 text, base64-encoded.
	type device struct {
		SerialNumber     string `xml:"SerialNumber"`
		Base32StringSeed string `xml:"Base32StringSeed"`
	}
	return struct {
		Device device `xml:"VirtualMFADevice"`
	}{device{d.SerialNumber, base64.StdEncoding.EncodeToString([]byte(seed))}}, nil
}

// serialParam reads SerialNumber, which must name a virtual device of this
// account.
func (c *call) serialParam() (string, error) {
	serial, err := c.required("SerialNumber")
	if err != nil {
		return "", err
	}
	if len(serial) > 256 {
		return "", postern.Invalidf("SerialNumber must be at most 256 characters")
	}
	return serial, nil
}

func enableMFADevice(c *call) (any, error) {
	name, err := c.userAction("iam:EnableMFADevice", false)
	if err != nil {
		return nil, err
	}
	serial, err := c.serialParam()
	if err != nil {
		return nil, err
	}
	code1, err := c.required("AuthenticationCode1")
	if err != nil {
		return nil, err
	}
	c.addResource(serial)
	return nil, c.s.auth.EnableMFADevice(c.ctx, name, serial, code1, c.str("AuthenticationCode2"))
}

func deactivateMFADevice(c *call) (any, error) {
	name, err := c.userAction("iam:DeactivateMFADevice", true)
	if err != nil {
		return nil, err
	}
	serial, err := c.serialParam()
	if err != nil {
		return nil, err
	}
	c.addResource(serial)
	return nil, c.s.auth.DeactivateMFADevice(c.ctx, name, serial)
}

func deleteVirtualMFADevice(c *call) (any, error) {
	serial, err := c.serialParam()
	if err != nil {
		return nil, err
	}
	if err := c.authorize("iam:DeleteVirtualMFADevice", serial, nil); err != nil {
		return nil, err
	}
	return nil, c.s.auth.Store().DeleteMFADevice(c.ctx, serial)
}

func listMFADevices(c *call) (any, error) {
	name, err := c.userAction("iam:ListMFADevices", true)
	if err != nil {
		return nil, err
	}
	ds, err := c.s.auth.Store().ListMFADevices(c.ctx, name)
	if err != nil {
		return nil, err
	}
	type device struct {
		UserName     string `xml:"UserName"`
		SerialNumber string `xml:"SerialNumber"`
		EnableDate   string `xml:"EnableDate"`
	}
	out := struct {
		Devices     []device `xml:"MFADevices>member"`
		IsTruncated bool     `xml:"IsTruncated"`
	}{Devices: []device{}}
	for _, d := range ds {
		out.Devices = append(out.Devices, device{d.UserName, d.SerialNumber, iamTime(d.EnabledAt)})
	}
	return out, nil
}
