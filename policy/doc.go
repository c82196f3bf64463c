// Package policy parses and evaluates IAM identity policies: the JSON
// documents attached to Postern's users and groups.
//
// Parse checks a document and compiles it once: wildcards, policy
// variables, numbers, dates, addresses and ARNs are parsed then, so that
// Evaluate, which runs on every API request, does no parsing and, for
// contexts with lower-case keys, no allocation in the common case. The
// package does no I/O.
//
// The language is IAM's: Version, Statement (an object or an array), Sid,
// Effect, Action/NotAction, Resource/NotResource and Condition with the
// String*, Numeric*, Date*, Bool, BinaryEquals, IpAddress/NotIpAddress,
// Arn* and Null operators, their ...IfExists forms and the ForAnyValue: and
// ForAllValues: prefixes, and policy variables such as ${aws:username} in
// Resource and in String and Arn condition values. Principal and
// NotPrincipal belong to resource policies and are rejected.
package policy
