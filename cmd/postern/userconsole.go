package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/iam"
	"github.com/aws/smithy-go"
	"golang.org/x/term"

	"github.com/postern-dev/postern/client"
	"github.com/postern-dev/postern/password"
	"github.com/postern-dev/postern/totp"
)

// This file holds the console-credential verbs of `postern user`:
// set-password (IAM login profiles), enable-mfa and disable-mfa (virtual
// MFA devices).

// terminal returns the file descriptor of m.Stdin when it is a terminal.
func (m *Main) terminal() (int, bool) {
	f, ok := m.Stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return 0, false
	}
	return int(f.Fd()), true
}

// readPassword reads a new password: all of stdin (one trailing newline
// dropped) with --password-stdin, or twice from the terminal, unechoed.
func (m *Main) readPassword(fromStdin bool, user string) (string, error) {
	if fromStdin {
		b, err := io.ReadAll(io.LimitReader(m.Stdin, 4096))
		if err != nil {
			return "", err
		}
		s := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
		return s, nil
	}
	fd, ok := m.terminal()
	if !ok {
		return "", usagef("user set-password: stdin is not a terminal; pipe the password in with --password-stdin")
	}
	fmt.Fprintf(m.Stderr, "New console password for %s: ", user)
	a, err := term.ReadPassword(fd)
	fmt.Fprintln(m.Stderr)
	if err != nil {
		return "", err
	}
	fmt.Fprint(m.Stderr, "Repeat it: ")
	b, err := term.ReadPassword(fd)
	fmt.Fprintln(m.Stderr)
	if err != nil {
		return "", err
	}
	if string(a) != string(b) {
		return "", errors.New("the passwords do not match; nothing changed")
	}
	return string(a), nil
}

func apiCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func runUserSetPassword(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("user set-password", "user set-password [--password-stdin] USER",
		"postern user set-password alice                       # prompts twice\n"+
			"printf '%s\\n' \"$PW\" | postern user set-password --password-stdin alice")
	fromStdin := fs.Bool("password-stdin", false, "read the password from standard input instead of prompting")
	names, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return usagef("user set-password: want one USER")
	}
	user := names[0]
	pw, err := m.readPassword(*fromStdin, user)
	if err != nil {
		return err
	}
	// Say what is wrong before a round trip; the server checks again.
	if err := password.Check(pw, user); err != nil {
		return fmt.Errorf("the password was refused: %w", err)
	}
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	verb := "Set"
	_, err = svc.CreateLoginProfile(ctx, &iam.CreateLoginProfileInput{UserName: aws.String(user), Password: aws.String(pw)})
	if apiCode(err) == "EntityAlreadyExists" {
		verb = "Changed"
		_, err = svc.UpdateLoginProfile(ctx, &iam.UpdateLoginProfileInput{UserName: aws.String(user), Password: aws.String(pw)})
	}
	if err != nil {
		return fmt.Errorf("set the console password of %s: %w", user, client.Clean(err))
	}
	m.done(fs, "%s the console password of %s; the user's console sessions have ended.", verb, user)
	return nil
}

// mfaSerial returns the serial number of the user's virtual MFA device,
// which Postern names after the user.
func mfaSerial(ctx context.Context, svc *iam.Client, user string) (string, error) {
	out, err := svc.GetUser(ctx, &iam.GetUserInput{UserName: aws.String(user)})
	if err != nil {
		return "", fmt.Errorf("user %s: %w", user, client.Clean(err))
	}
	return strings.Replace(aws.ToString(out.User.Arn), ":user/", ":mfa/", 1), nil
}

func runUserEnableMFA(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("user enable-mfa", "user enable-mfa [--code CODE] USER",
		"postern user enable-mfa alice          # shows the otpauth URI, then asks for a code\n"+
			"postern user enable-mfa alice </dev/null # shows the URI only; the device waits\n"+
			"postern user enable-mfa --code 123456 alice  # confirms the waiting device")
	code := fs.String("code", "", "a current code from the authenticator app: confirm the device created earlier")
	names, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return usagef("user enable-mfa: want one USER")
	}
	user := names[0]
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	serial, err := mfaSerial(ctx, svc, user)
	if err != nil {
		return err
	}
	if *code == "" {
		if err := m.newMFADevice(ctx, svc, user); err != nil {
			return err
		}
		c, err := m.promptCode()
		if err != nil {
			return err
		}
		if c == "" {
			return fmt.Errorf("no code was entered, so MFA is not enabled yet; finish with: postern user enable-mfa --code CODE %s", user)
		}
		*code = c
	}
	_, err = svc.EnableMFADevice(ctx, &iam.EnableMFADeviceInput{
		UserName: aws.String(user), SerialNumber: aws.String(serial),
		AuthenticationCode1: aws.String(*code), AuthenticationCode2: aws.String(""),
	})
	if err != nil {
		return fmt.Errorf("enable MFA for %s: %w", user, client.Clean(err))
	}
	m.done(fs, "MFA is enabled for %s (device %s); the user's console sessions have ended.", user, serial)
	return nil
}

// newMFADevice creates the user's virtual device, replacing one that was
// never confirmed, and prints its otpauth URI.
func (m *Main) newMFADevice(ctx context.Context, svc *iam.Client, user string) error {
	in := &iam.CreateVirtualMFADeviceInput{VirtualMFADeviceName: aws.String(user)}
	out, err := svc.CreateVirtualMFADevice(ctx, in)
	if apiCode(err) == "EntityAlreadyExists" {
		serial, serr := mfaSerial(ctx, svc, user)
		if serr != nil {
			return serr
		}
		_, derr := svc.DeleteVirtualMFADevice(ctx, &iam.DeleteVirtualMFADeviceInput{SerialNumber: aws.String(serial)})
		if apiCode(derr) == "DeleteConflict" {
			return fmt.Errorf("MFA is already enabled for %s; run 'postern user disable-mfa %s' first", user, user)
		}
		if derr != nil {
			return client.Clean(derr)
		}
		out, err = svc.CreateVirtualMFADevice(ctx, in)
	}
	if err != nil {
		return fmt.Errorf("create an MFA device for %s: %w", user, client.Clean(err))
	}
	// The SDK has decoded the blob's base64: what is left is base32 text.
	secret, err := totp.DecodeSecret(string(out.VirtualMFADevice.Base32StringSeed))
	if err != nil {
		return fmt.Errorf("the server sent an unreadable MFA seed: %w", err)
	}
	// The URI is the secret: it is shown this once, like an access key.
	fmt.Fprintf(m.Stdout, "Add this to an authenticator app (shown only this once):\n\n  %s\n\n", totp.URI("Postern", user, secret))
	return nil
}

// promptCode reads one line holding a code; "" when stdin is empty.
func (m *Main) promptCode() (string, error) {
	if _, ok := m.terminal(); ok {
		fmt.Fprint(m.Stderr, "Enter the current code from the app: ")
	}
	line, err := bufio.NewReader(m.Stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", err
	}
	return strings.TrimSpace(line), nil
}

func runUserDisableMFA(ctx context.Context, m *Main, args []string) error {
	fs := m.newClientFlagSet("user disable-mfa", "user disable-mfa USER",
		"postern user disable-mfa alice")
	names, err := fs.parseArgs(args)
	if err != nil {
		return err
	}
	if len(names) != 1 {
		return usagef("user disable-mfa: want one USER")
	}
	user := names[0]
	cfg, err := connect(ctx)
	if err != nil {
		return err
	}
	svc := client.IAM(cfg)
	out, err := svc.ListMFADevices(ctx, &iam.ListMFADevicesInput{UserName: aws.String(user)})
	if err != nil {
		return fmt.Errorf("MFA devices of %s: %w", user, client.Clean(err))
	}
	if len(out.MFADevices) == 0 {
		return fmt.Errorf("MFA is not enabled for %s", user)
	}
	for _, d := range out.MFADevices {
		serial := aws.ToString(d.SerialNumber)
		if _, err := svc.DeactivateMFADevice(ctx, &iam.DeactivateMFADeviceInput{UserName: aws.String(user), SerialNumber: aws.String(serial)}); err != nil {
			return fmt.Errorf("deactivate %s: %w", serial, client.Clean(err))
		}
		if _, err := svc.DeleteVirtualMFADevice(ctx, &iam.DeleteVirtualMFADeviceInput{SerialNumber: aws.String(serial)}); err != nil {
			return fmt.Errorf("delete %s: %w", serial, client.Clean(err))
		}
	}
	m.done(fs, "MFA is disabled for %s; the user's console sessions have ended.", user)
	return nil
}
