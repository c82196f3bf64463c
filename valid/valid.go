// Package valid checks the shape of identifiers and names: EC2 resource
// ids, IAM access key ids and names, activation ids, Linux user names.
//
// The checks are written out instead of being regular expressions: they
// run on every API call, and every command of the postern binary — each
// `postern proxy` that ssh starts included — would otherwise compile the
// expressions before doing anything.
package valid

// Digit reports whether c is 0-9.
func Digit(c byte) bool { return '0' <= c && c <= '9' }

// Letter reports whether c is an ASCII letter.
func Letter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }

// Alnum reports whether c is an ASCII letter or digit.
func Alnum(c byte) bool { return Letter(c) || Digit(c) }

// LowerHex reports whether c is 0-9 or a-f.
func LowerHex(c byte) bool { return Digit(c) || 'a' <= c && c <= 'f' }

// All reports whether every byte of s is ok (true for "").
func All(s string, ok func(byte) bool) bool {
	for i := 0; i < len(s); i++ {
		if !ok(s[i]) {
			return false
		}
	}
	return true
}

// HexID reports whether s is prefix followed by min to max lower-case
// hexadecimal digits, as EC2 ids are ("i-" and 8 or 17 digits).
func HexID(s, prefix string, min, max int) bool {
	if len(s) < len(prefix)+min || len(s) > len(prefix)+max || s[:len(prefix)] != prefix {
		return false
	}
	return All(s[len(prefix):], LowerHex)
}

// UUID reports whether s is a lower-case UUID in its 8-4-4-4-12 form.
func UUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !LowerHex(s[i]) {
				return false
			}
		}
	}
	return true
}

// AccessKeyID reports whether s is an IAM access key id: AKIA and 16
// base-32 characters (A-Z, 2-7).
func AccessKeyID(s string) bool {
	if len(s) != 20 || s[:4] != "AKIA" {
		return false
	}
	return All(s[4:], func(c byte) bool { return 'A' <= c && c <= 'Z' || '2' <= c && c <= '7' })
}

// IAMName reports whether s is made only of what IAM allows in user,
// group and policy names: letters, digits and +=,.@_- (at least one).
func IAMName(s string) bool {
	return s != "" && All(s, func(c byte) bool {
		switch c {
		case '+', '=', ',', '.', '@', '_', '-':
			return true
		}
		return Alnum(c)
	})
}

// OSUser reports whether s is a Linux user name as EC2 Instance Connect
// accepts it: at most 32 characters, a letter or _ first, then letters,
// digits and @._-, and a $ allowed last (Samba machine accounts). That is
// `^[A-Za-z_][A-Za-z0-9@._-]{0,30}[A-Za-z0-9$_-]?$`: at full length the
// last character comes from the second class, which holds no @ or dot.
func OSUser(s string) bool {
	n := len(s)
	if n == 0 || n > 32 || !(Letter(s[0]) || s[0] == '_') {
		return false
	}
	middle := func(c byte) bool { return Alnum(c) || c == '@' || c == '.' || c == '_' || c == '-' }
	if n == 1 {
		return true
	}
	if !All(s[1:n-1], middle) {
		return false
	}
	switch last := s[n-1]; {
	case Alnum(last) || last == '_' || last == '-' || last == '$':
		return true
	case last == '@' || last == '.':
		return n <= 31
	}
	return false
}
