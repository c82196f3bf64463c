import './style.css';
import { ApiError, Session, getSession, setSignedOutHandler, signOut } from './api';
import { clear, h } from './dom';
import { signinPage } from './pages/signin';
import { instancesPage } from './pages/instances';

// Hash routes under /console/: #/instances, #/terminal?instanceId=…&osUser=…,
// #/recordings[/ID], #/audit, #/endpoints, #/iam. Each page returns its
// element and, optionally, a function that tears it down.
export interface Page {
  el: HTMLElement;
  dispose?: () => void;
  title: string;
}

export interface Route {
  name: string;
  rest: string[];
  params: URLSearchParams;
}

const app = document.getElementById('app')!;
let session: Session | null = null;
let current: Page | null = null;
let renderSeq = 0;

const NAV: [string, string][] = [
  ['instances', 'Instances'],
  ['endpoints', 'Endpoints'],
  ['recordings', 'Recordings'],
  ['audit', 'Audit'],
  ['iam', 'Users & policies'],
];

export function parseRoute(): Route {
  const raw = location.hash.replace(/^#\/?/, '');
  const [p, q] = raw.split('?', 2);
  const parts = p.split('/').filter(Boolean).map(decodeURIComponent);
  return { name: parts[0] || 'instances', rest: parts.slice(1), params: new URLSearchParams(q || '') };
}

export function go(hash: string): void {
  if (location.hash === hash) void render();
  else location.hash = hash;
}

function header(s: Session, active: string): HTMLElement {
  const out = h('button', { type: 'button', class: 'link', id: 'signout', onclick: doSignOut }, 'Sign out');
  return h(
    'header',
    { class: 'topbar' },
    h('a', { class: 'brand', href: '#/instances' }, 'Postern'),
    h(
      'nav',
      { 'aria-label': 'Console' },
      h('ul', null, NAV.map(([k, label]) => h('li', null, h('a', { href: `#/${k}`, 'aria-current': k === active ? 'page' : undefined }, label)))),
    ),
    h(
      'div',
      { class: 'who' },
      h('span', { title: s.arn, id: 'whoami' }, s.user),
      s.mfa ? h('span', { class: 'badge ok', title: 'Signed in with a second factor' }, 'MFA') : null,
      out,
    ),
  );
}

async function doSignOut(): Promise<void> {
  try {
    await signOut();
  } catch {
    // The session may already be gone; either way it is over here.
  }
  session = null;
  go('#/signin');
}

async function loadPage(r: Route): Promise<Page> {
  switch (r.name) {
    case 'instances':
      return instancesPage(r);
    case 'terminal':
      return (await import('./pages/terminal')).terminalPage(r);
    case 'recordings':
      return (await import('./pages/recordings')).recordingsPage(r);
    case 'audit':
      return (await import('./pages/audit')).auditPage(r);
    case 'endpoints':
      return (await import('./pages/endpoints')).endpointsPage(r);
    case 'iam':
      return (await import('./pages/iam')).iamPage(r);
    default:
      return { title: 'Not found', el: h('main', { class: 'page' }, h('h1', null, 'Page not found'), h('p', null, h('a', { href: '#/instances' }, 'Go to instances'))) };
  }
}

async function render(): Promise<void> {
  const seq = ++renderSeq;
  const r = parseRoute();
  current?.dispose?.();
  current = null;
  if (!session && r.name !== 'signin') {
    try {
      session = await getSession();
    } catch (e) {
      if (seq !== renderSeq) return;
      if (!(e instanceof ApiError) || e.code !== 'NotSignedIn') console.warn('session check failed', e);
      const back = location.hash && !location.hash.startsWith('#/signin') ? location.hash : '#/instances';
      sessionStorage.setItem('postern.after-signin', back);
      location.replace('#/signin');
      return;
    }
  }
  if (seq !== renderSeq) return;
  if (r.name === 'signin') {
    session = null;
    const page = signinPage((s) => {
      session = s;
      const next = sessionStorage.getItem('postern.after-signin') || '#/instances';
      sessionStorage.removeItem('postern.after-signin');
      go(next);
    });
    show(page, null, r);
    return;
  }
  let page: Page;
  try {
    page = await loadPage(r);
  } catch (e) {
    page = { title: 'Error', el: h('main', { class: 'page' }, h('h1', null, 'This page failed to load'), h('p', null, String(e))) };
  }
  if (seq !== renderSeq) {
    page.dispose?.();
    return;
  }
  show(page, session, r);
}

function show(page: Page, s: Session | null, r: Route): void {
  current = page;
  document.title = `${page.title} · Postern console`;
  page.el.id = 'main';
  clear(
    app,
    h('a', { class: 'skip', href: '#main', onclick: (e: Event) => { e.preventDefault(); page.el.focus(); } }, 'Skip to content'),
    s ? header(s, r.name === 'terminal' ? 'instances' : r.name) : null,
    page.el,
  );
  page.el.tabIndex = -1;
  const auto = page.el.querySelector<HTMLElement>('[autofocus]');
  if (auto) auto.focus();
}

setSignedOutHandler(() => {
  if (!session) return;
  session = null;
  sessionStorage.setItem('postern.after-signin', location.hash || '#/instances');
  go('#/signin');
});

window.addEventListener('hashchange', () => void render());
void render();
