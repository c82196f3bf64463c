import { FitAddon } from '@xterm/addon-fit';
import { h } from '../dom';
import type { Page, Route } from '../main';
import { newTerminal } from '../term';

// The server takes at most 1 MiB per binary frame; a big paste goes in pieces.
const MAX_FRAME = 1 << 20;

type State = 'connecting' | 'connected' | 'closed' | 'lost' | 'error';

export function terminalPage(r: Route): Page {
  const instanceId = r.params.get('instanceId') ?? '';
  const osUser = r.params.get('osUser') ?? '';
  const stateEl = h('span', { class: 'state', id: 'term-state', 'data-state': 'connecting' }, 'Connecting…');
  const msgEl = h('span', { class: 'term-msg', id: 'term-message' });
  // The server's own words under a plainer explanation, when there is one.
  const detailEl = h('span', { class: 'term-detail', id: 'term-detail', hidden: true });
  const reconnect = h('button', { type: 'button', class: 'primary small', id: 'reconnect', hidden: true }, 'Reconnect');
  // The terminal's size as the shell is told it, COLS×ROWS (what tput cols and tput lines print).
  const sizeEl = h('span', { class: 'term-size mono', id: 'term-size', title: 'Terminal size: columns × rows' });
  const status = h('div', { class: 'term-status', role: 'status', 'aria-live': 'polite' }, stateEl, h('span', { class: 'term-text' }, msgEl, detailEl), sizeEl, reconnect);
  const host = h('div', { class: 'term-host', id: 'terminal' });
  const el = h(
    'main',
    { class: 'page terminal-page' },
    h(
      'div',
      { class: 'term-head' },
      h('h1', null, `${osUser}@${instanceId}`),
      h('span', { class: 'muted small-text' }, 'Copy: select, then Ctrl+Shift+C · Paste: Ctrl+V, Ctrl+Shift+V or Cmd+V'),
      h('a', { href: '#/instances', class: 'small-text' }, 'Back to instances'),
    ),
    status,
    host,
  );
  if (!instanceId || !osUser) {
    stateEl.textContent = 'Error';
    msgEl.textContent = 'Choose an instance and an OS user on the Instances page.';
    return { title: 'Terminal', el };
  }

  const term = newTerminal({ cursorBlink: true });
  const fit = new FitAddon();
  term.loadAddon(fit);
  const enc = new TextEncoder();
  let ws: WebSocket | null = null;
  let state: State = 'connecting';
  let disposed = false;
  let gotError = false;

  function setState(s: State, text: string, message = '', detail = ''): void {
    state = s;
    stateEl.dataset.state = s;
    stateEl.textContent = text;
    msgEl.textContent = message;
    detailEl.textContent = detail;
    detailEl.hidden = !detail;
    reconnect.hidden = !(s === 'closed' || s === 'lost' || s === 'error');
    host.classList.toggle('dimmed', s !== 'connected' && s !== 'connecting');
  }

  function send(data: Uint8Array<ArrayBuffer>): void {
    if (!ws || ws.readyState !== WebSocket.OPEN) return;
    for (let i = 0; i < data.length; i += MAX_FRAME) ws.send(data.subarray(i, Math.min(i + MAX_FRAME, data.length)));
  }

  function sendResize(): void {
    if (ws && ws.readyState === WebSocket.OPEN) ws.send(JSON.stringify({ type: 'resize', cols: term.cols, rows: term.rows }));
    showSize();
  }

  function showSize(): void {
    sizeEl.textContent = `${term.cols}×${term.rows}`;
    sizeEl.dataset.cols = String(term.cols);
    sizeEl.dataset.rows = String(term.rows);
  }

  function connect(): void {
    gotError = false;
    setState('connecting', 'Connecting…', `Pushing a one-time key to ${instanceId} as ${osUser}`);
    const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
    const q = new URLSearchParams({ instanceId, osUser, cols: String(term.cols), rows: String(term.rows) });
    const sock = new WebSocket(`${proto}//${location.host}/console/api/terminal?${q}`);
    sock.binaryType = 'arraybuffer';
    ws = sock;
    sock.onopen = () => {
      if (ws !== sock) return;
      sendResize(); // the window may have changed while the socket opened
    };
    sock.onmessage = (ev) => {
      if (ws !== sock) return;
      if (typeof ev.data !== 'string') {
        term.write(new Uint8Array(ev.data as ArrayBuffer));
        return;
      }
      let m: any;
      try {
        m = JSON.parse(ev.data);
      } catch {
        return;
      }
      if (m.type === 'status') {
        if (m.state === 'connected') {
          setState('connected', 'Connected', m.message || '');
          term.focus();
        } else if (m.state === 'connecting') setState('connecting', 'Connecting…', m.message || '');
        else if (m.state === 'closed') {
          const lost = /lost|fail/i.test(m.message || '');
          setState(lost ? 'lost' : 'closed', lost ? 'Connection lost' : 'Session ended', m.message || '');
        }
      } else if (m.type === 'error') {
        if (m.code === 'InvalidMessage') {
          msgEl.textContent = m.message || 'The server refused a control message.';
          return;
        }
        gotError = true;
        const plain = explain(m.code, m.action);
        setState('error', errorTitle(m.code), plain || m.message || m.code, plain ? m.message || '' : '');
      }
    };
    sock.onclose = (ev) => {
      if (ws !== sock || disposed) return;
      ws = null;
      if (gotError || state === 'closed' || state === 'lost') {
        if (state === 'closed' || state === 'lost') term.write('\r\n\x1b[2m[' + (msgEl.textContent || 'session ended') + ']\x1b[0m\r\n');
        return;
      }
      if (ev.code === 1000) setState('closed', 'Session ended', ev.reason || 'The session ended.');
      else setState('lost', 'Connection lost', ev.reason || (state === 'connecting' ? 'Could not open the terminal (not signed in, or the server refused it).' : 'The connection to the server was lost.'));
      term.write('\r\n\x1b[2m[connection closed]\x1b[0m\r\n');
    };
  }

  // What a refusal means for the person in front of the page. The
  // action says which step was refused: the key push, or the tunnel
  // through the instance's Instance Connect Endpoint.
  function explain(code: string, action?: string): string {
    switch (code) {
      case 'AccessDenied':
        if (action === 'ec2-instance-connect:OpenTunnel')
          return `Your policies do not allow you to reach ${instanceId} through its Instance Connect Endpoint (ec2-instance-connect:OpenTunnel). Ask an administrator for access.`;
        return `Your policies do not allow you to connect to ${instanceId} as ${osUser} (ec2-instance-connect:SendSSHPublicKey). Ask an administrator for access, or try another OS user.`;
      default:
        return '';
    }
  }

  term.onData((s) => send(enc.encode(s)));
  // Mouse reports in some modes come as binary strings: one byte per char.
  term.onBinary((s) => send(Uint8Array.from(s, (c) => c.charCodeAt(0) & 0xff)));
  term.onResize(() => sendResize());

  // Copy and paste. Ctrl+V is paste here (not the shell's quoted-insert):
  // the browser's own paste event is used when it comes, otherwise the
  // clipboard API.
  let nativePaste = false;
  host.addEventListener('paste', () => (nativePaste = true), true);
  term.attachCustomKeyEventHandler((e) => {
    if (e.type !== 'keydown') return true;
    const key = e.key.toLowerCase();
    const mod = e.ctrlKey || e.metaKey;
    if (mod && e.shiftKey && key === 'c') {
      e.preventDefault(); // Ctrl+Shift+C opens the inspector in some browsers
      const sel = term.getSelection();
      if (sel) void navigator.clipboard?.writeText(sel).catch(() => (msgEl.textContent = 'The browser refused access to the clipboard.'));
      return false;
    }
    if (e.metaKey && !e.ctrlKey && key === 'c') return false; // the browser's copy event: xterm fills it
    if (mod && !e.altKey && key === 'v') {
      nativePaste = false;
      setTimeout(() => {
        if (nativePaste) return;
        if (!navigator.clipboard?.readText) {
          msgEl.textContent = 'This browser does not let the page read the clipboard; use its Paste menu.';
          return;
        }
        navigator.clipboard.readText().then(
          (t) => t && term.paste(t),
          () => (msgEl.textContent = 'The browser refused to read the clipboard; allow clipboard access for this site or use its Paste menu.'),
        );
      }, 0);
      return false;
    }
    return true;
  });

  const refit = () => {
    if (!host.isConnected || host.clientWidth === 0) return;
    try {
      fit.fit();
    } catch {
      // not laid out yet
    }
  };
  const ro = new ResizeObserver(() => refit());
  window.addEventListener('resize', refit);
  reconnect.addEventListener('click', () => {
    term.write('\r\n\x1b[2m[reconnecting]\x1b[0m\r\n');
    connect();
  });

  // Open once the element is in the document, so that fit can measure it.
  requestAnimationFrame(() => {
    if (disposed) return;
    term.open(host);
    refit();
    ro.observe(host);
    connect();
    term.focus();
  });

  return {
    title: `${osUser}@${instanceId}`,
    el,
    dispose() {
      disposed = true;
      ro.disconnect();
      window.removeEventListener('resize', refit);
      if (ws) {
        const s = ws;
        ws = null;
        s.close(1000, 'left the page');
      }
      term.dispose();
    },
  };
}

function errorTitle(code: string): string {
  switch (code) {
    case 'AccessDenied':
      return 'Access denied';
    case 'InstanceUnreachable':
    case 'EC2InstanceUnavailableException':
      return 'Instance unreachable';
    case 'HostKeyUnknown':
    case 'HostKeyMismatch':
      return 'Host key not trusted';
    case 'EC2InstanceNotFoundException':
      return 'No such instance';
    default:
      return code || 'Error';
  }
}
