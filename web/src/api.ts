// Calls to the console API: sign-in, and AWS calls made as the signed-in
// user through POST /console/api/aws (same origin, session cookie).

export interface Session {
  user: string;
  arn: string;
  mfa: boolean;
  expiresAt: string;
}

/** An error from the console API or from an AWS call. */
export class ApiError extends Error {
  constructor(
    public code: string,
    message: string,
    public status: number,
    public retryAfter?: number,
  ) {
    super(message || code);
  }
}

/** Called when a request answers NotSignedIn: the session ended. */
let onSignedOut: () => void = () => {};
export function setSignedOutHandler(f: () => void): void {
  onSignedOut = f;
}

async function consoleJSON(method: string, path: string, body?: unknown): Promise<any> {
  const res = await fetch(path, {
    method,
    credentials: 'same-origin',
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let data: any = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { error: 'InvalidResponse', message: text.slice(0, 200) };
  }
  if (!res.ok) {
    const ra = Number(res.headers.get('Retry-After'));
    throw new ApiError(data.error || `HTTP${res.status}`, data.message || res.statusText, res.status, isFinite(ra) && ra > 0 ? ra : undefined);
  }
  return data;
}

export function getSession(): Promise<Session> {
  return consoleJSON('GET', '/console/api/session');
}

export function signIn(user: string, password: string, otp: string): Promise<Session> {
  return consoleJSON('POST', '/console/api/signin', { user, password, otp });
}

export function signOut(): Promise<unknown> {
  return consoleJSON('POST', '/console/api/signout', {});
}

const AWS_PATH = '/console/api/aws';

async function awsFetch(init: RequestInit): Promise<Response> {
  const res = await fetch(AWS_PATH, { method: 'POST', credentials: 'same-origin', ...init });
  if (res.status === 401 || res.status === 403) {
    // The console's own refusals are {"error","message"}; AWS errors pass through.
    const ct = res.headers.get('Content-Type') || '';
    if (ct.includes('application/json') && !ct.includes('amz')) {
      const data = await res.clone().json().catch(() => ({}));
      if (data && data.error) {
        if (data.error === 'NotSignedIn') onSignedOut();
        throw new ApiError(data.error, data.message || '', res.status);
      }
    }
  }
  return res;
}

/** An EC2 or IAM Query call; returns the parsed XML document. */
export async function awsQuery(params: Record<string, string | number | undefined>): Promise<Document> {
  const body = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') body.set(k, String(v));
  const res = await awsFetch({
    headers: { 'Content-Type': 'application/x-www-form-urlencoded; charset=utf-8' },
    body: body.toString(),
  });
  const text = await res.text();
  const doc = new DOMParser().parseFromString(text, 'application/xml');
  if (!res.ok || doc.getElementsByTagName('parsererror').length) {
    // EC2: <Response><Errors><Error><Code/><Message/>; IAM: <ErrorResponse><Error>…
    const err = doc.getElementsByTagName('Error')[0];
    const code = err ? textOf(err, 'Code') : '';
    const msg = err ? textOf(err, 'Message') : '';
    if (code) throw new ApiError(code, msg, res.status);
    throw new ApiError(`HTTP${res.status}`, text.slice(0, 300) || res.statusText, res.status);
  }
  return doc;
}

/** An AWS JSON 1.1 call (X-Amz-Target); returns the parsed body. */
export async function awsJSON<T = any>(target: string, payload: unknown): Promise<T> {
  const res = await awsFetch({
    headers: { 'Content-Type': 'application/x-amz-json-1.1', 'X-Amz-Target': target },
    body: JSON.stringify(payload ?? {}),
  });
  const text = await res.text();
  let data: any = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    throw new ApiError(`HTTP${res.status}`, text.slice(0, 300), res.status);
  }
  if (!res.ok) {
    let code = String(data.__type || res.headers.get('X-Amzn-ErrorType') || `HTTP${res.status}`);
    code = code.slice(code.lastIndexOf('#') + 1).split(':')[0];
    throw new ApiError(code, data.Message || data.message || '', res.status);
  }
  return data as T;
}

// XML helpers over the namespaced AWS documents: match on local names.

export function child(el: Element | null | undefined, name: string): Element | null {
  if (!el) return null;
  for (const c of Array.from(el.children)) if (c.localName === name) return c;
  return null;
}

/** The element at a path of local names, e.g. path(doc, 'instanceState', 'name'). */
export function path(el: Element | null | undefined, ...names: string[]): Element | null {
  let cur: Element | null | undefined = el;
  for (const n of names) cur = child(cur, n);
  return cur ?? null;
}

export function textOf(el: Element | null | undefined, ...names: string[]): string {
  return path(el, ...names)?.textContent?.trim() ?? '';
}

/** The <item> (EC2) or <member> (IAM) children of a set element. */
export function items(set: Element | null | undefined): Element[] {
  if (!set) return [];
  return Array.from(set.children).filter((c) => c.localName === 'item' || c.localName === 'member');
}

export interface Tag {
  key: string;
  value: string;
}

export function tagsOf(el: Element): Tag[] {
  return items(child(el, 'tagSet')).map((t) => ({ key: textOf(t, 'key'), value: textOf(t, 'value') }));
}

/** What to tell a person for a failed call, given what they were doing. */
export function describeError(e: unknown, doing: string): { message: string; detail: string } {
  if (e instanceof ApiError) {
    switch (e.code) {
      case 'AccessDenied':
      case 'AccessDeniedException':
      case 'UnauthorizedOperation':
        return { message: `You are not allowed to ${doing}.`, detail: e.message };
      case 'NotSignedIn':
        return { message: 'Your session has ended. Sign in again.', detail: '' };
      case 'CrossSiteRequestRefused':
        return { message: 'The request was refused as cross-site.', detail: e.message };
      case 'Throttling':
      case 'ThrottlingException':
      case 'RequestLimitExceeded':
        return { message: `Too many requests; cannot ${doing} right now. Try again shortly.`, detail: e.message };
    }
    if (e.status === 404 && e.code.startsWith('HTTP')) {
      return { message: `Cannot ${doing}: this server does not offer that call to the console.`, detail: e.message };
    }
    return { message: `Cannot ${doing}: ${e.code}`, detail: e.message };
  }
  if (e instanceof TypeError) return { message: `Cannot ${doing}: the server did not answer.`, detail: e.message };
  return { message: `Cannot ${doing}.`, detail: String(e) };
}
