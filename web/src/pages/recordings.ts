import { awsJSON, describeError } from '../api';
import { clear, emptyState, errorBox, field, fmtBytes, fmtDuration, fmtTime, h, loading } from '../dom';
import type { Page, Route } from '../main';
import { newTerminal } from '../term';

const TARGET = 'Postern_20261101';

interface Recording {
  RecordingId: string;
  UserName: string;
  UserArn: string;
  InstanceId: string;
  OsUser: string;
  SourceIp: string;
  Cols: number;
  Rows: number;
  StartTime: number;
  EndTime?: number;
  Size: number;
  Events: number;
  Error?: string;
}

const date = (s?: number) => (s ? new Date(s * 1000) : null);

export function recordingsPage(r: Route): Page {
  if (r.rest[0]) return playerPage(r.rest[0]);
  const userIn = h('input', { name: 'user', autocomplete: 'off', value: r.params.get('user') ?? '' });
  const instIn = h('input', { name: 'instance', autocomplete: 'off', placeholder: 'i-…', value: r.params.get('instance') ?? '' });
  const body = h('div', { class: 'results' });
  const more = h('button', { type: 'button', hidden: true }, 'Load more');
  let next = '';
  let rows: Recording[] = [];

  function table(): void {
    if (!rows.length) {
      clear(body, emptyState('No recordings', 'Every browser terminal session is recorded; none match yet.'));
      return;
    }
    clear(
      body,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'grid', id: 'recordings' },
          h('thead', null, h('tr', null, ['Started', 'User', 'Instance', 'OS user', 'From', 'Duration', 'Size', ''].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            null,
            rows.map((x) =>
              h(
                'tr',
                { 'data-recording-id': x.RecordingId },
                h('td', null, fmtTime(date(x.StartTime))),
                h('td', null, x.UserName),
                h('td', { class: 'mono nowrap' }, x.InstanceId),
                h('td', null, x.OsUser),
                h('td', { class: 'mono' }, x.SourceIp),
                h('td', null, x.EndTime ? fmtDuration(x.EndTime - x.StartTime) : h('span', { class: 'badge warn' }, 'in progress'), x.Error ? h('span', { class: 'badge bad', title: x.Error }, 'error') : null),
                h('td', null, fmtBytes(x.Size)),
                h('td', null, h('a', { class: 'button small primary', href: `#/recordings/${encodeURIComponent(x.RecordingId)}` }, 'Play')),
              ),
            ),
          ),
        ),
      ),
    );
  }

  async function load(append: boolean): Promise<void> {
    if (!append) {
      rows = [];
      next = '';
      clear(body, loading('Loading recordings…'));
    }
    more.disabled = true;
    try {
      const out = await awsJSON<{ Recordings: Recording[]; NextToken?: string }>(`${TARGET}.ListRecordings`, {
        UserName: userIn.value.trim() || undefined,
        InstanceId: instIn.value.trim() || undefined,
        MaxResults: 50,
        NextToken: append ? next : undefined,
      });
      rows.push(...(out.Recordings || []));
      next = out.NextToken || '';
      table();
    } catch (e) {
      const { message, detail } = describeError(e, 'list recordings');
      clear(body, errorBox(message, detail));
      next = '';
    }
    more.hidden = !next;
    more.disabled = false;
  }
  more.addEventListener('click', () => load(true));
  void load(false);
  return {
    title: 'Recordings',
    el: h(
      'main',
      { class: 'page' },
      h('div', { class: 'page-head' }, h('h1', null, 'Recordings')),
      h(
        'form',
        { class: 'filters', role: 'search', onsubmit: (e: Event) => { e.preventDefault(); void load(false); } },
        field('User name', userIn),
        field('Instance', instIn),
        h('button', { type: 'submit' }, 'Filter'),
      ),
      body,
      more,
    ),
  };
}

interface CastEvent {
  t: number;
  kind: string;
  data: string;
}

async function fetchCast(id: string): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (let i = 0; i < 2000; i++) {
    const out = await awsJSON<{ Data: string; Offset: number; NextOffset?: number }>(`${TARGET}.GetRecordingContent`, { RecordingId: id, Offset: offset });
    const bin = atob(out.Data || '');
    parts.push(Uint8Array.from(bin, (c) => c.charCodeAt(0)));
    if (!out.NextOffset) break;
    offset = out.NextOffset;
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const all = new Uint8Array(total);
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

function parseCast(bytes: Uint8Array): { header: any; events: CastEvent[] } {
  const lines = new TextDecoder().decode(bytes).split('\n');
  const header = JSON.parse(lines[0] || '{}');
  const events: CastEvent[] = [];
  for (const line of lines.slice(1)) {
    if (!line.trim()) continue;
    try {
      const [t, kind, data] = JSON.parse(line);
      events.push({ t: Number(t), kind: String(kind), data: String(data) });
    } catch {
      // the last line of a recording in progress may be cut short
    }
  }
  return { header, events };
}

function playerPage(id: string): Page {
  const info = h('div', { class: 'rec-info' }, loading('Loading the recording…'));
  const host = h('div', { class: 'term-host player', id: 'player' });
  const play = h('button', { type: 'button', class: 'primary', id: 'play', disabled: true }, 'Play');
  const restart = h('button', { type: 'button', disabled: true }, 'Restart');
  const speed = h('select', { name: 'speed' }, ['1', '2', '4', '8'].map((s) => h('option', { value: s }, `${s}×`)));
  const skipIdle = h('input', { type: 'checkbox', name: 'skipIdle', checked: true });
  const progress = h('progress', { max: '1', value: '0', 'aria-label': 'Playback position' });
  const clock = h('span', { class: 'mono', 'aria-live': 'off' }, '0s');
  const controls = h(
    'div',
    { class: 'player-controls' },
    play,
    restart,
    field('Speed', speed),
    h('label', { class: 'check' }, skipIdle, ' Skip pauses over 2 s'),
    progress,
    clock,
  );
  const el = h(
    'main',
    { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Recording ', h('span', { class: 'mono' }, id)), h('a', { href: '#/recordings' }, 'All recordings')),
    info,
    controls,
    host,
  );

  const term = newTerminal({ disableStdin: true, cursorBlink: false });
  let events: CastEvent[] = [];
  let idx = 0;
  let pos = 0; // playback time in recording seconds (after idle capping)
  let times: number[] = []; // capped time of each event
  let timer = 0;
  let playing = false;
  let disposed = false;
  let dims = { cols: 80, rows: 24 };

  function computeTimes(): void {
    times = [];
    let prev = 0;
    let acc = 0;
    for (const e of events) {
      let gap = e.t - prev;
      if (skipIdle.checked && gap > 2) gap = 2;
      acc += Math.max(0, gap);
      times.push(acc);
      prev = e.t;
    }
  }
  const total = () => (times.length ? times[times.length - 1] : 0);

  function applyUntil(t: number): void {
    while (idx < events.length && times[idx] <= t) {
      const e = events[idx++];
      if (e.kind === 'o') term.write(e.data);
      else if (e.kind === 'r') {
        const m = /^(\d+)x(\d+)$/.exec(e.data);
        if (m) term.resize(Math.max(1, +m[1]), Math.max(1, +m[2]));
      }
    }
    pos = t;
    progress.value = total() ? Math.min(1, pos / total()) : 1;
    clock.textContent = `${fmtDuration(pos)} / ${fmtDuration(total())}`;
  }

  function stop(): void {
    playing = false;
    window.clearTimeout(timer);
    play.textContent = idx >= events.length ? 'Replay' : 'Play';
    play.setAttribute('aria-pressed', 'false');
  }

  function step(): void {
    if (!playing || disposed) return;
    if (idx >= events.length) {
      stop();
      return;
    }
    const next = times[idx];
    applyUntil(next);
    if (idx >= events.length) {
      stop();
      return;
    }
    const wait = ((times[idx] - next) * 1000) / Number(speed.value);
    timer = window.setTimeout(step, Math.min(wait, 5000));
  }

  function reset(): void {
    stop();
    term.reset();
    term.resize(dims.cols, dims.rows);
    idx = 0;
    applyUntil(0);
    play.textContent = 'Play';
  }

  play.addEventListener('click', () => {
    if (playing) return stop();
    if (idx >= events.length) reset();
    playing = true;
    play.textContent = 'Pause';
    play.setAttribute('aria-pressed', 'true');
    step();
  });
  restart.addEventListener('click', reset);
  skipIdle.addEventListener('change', () => {
    computeTimes();
    pos = idx > 0 ? times[idx - 1] : 0;
    applyUntil(pos);
  });

  requestAnimationFrame(async () => {
    if (disposed) return;
    term.open(host);
    try {
      const [meta, bytes] = await Promise.all([
        awsJSON<{ Recording: Recording }>(`${TARGET}.GetRecording`, { RecordingId: id }).catch(() => null),
        fetchCast(id),
      ]);
      if (disposed) return;
      const cast = parseCast(bytes);
      events = cast.events;
      dims = { cols: Number(cast.header.width) || 80, rows: Number(cast.header.height) || 24 };
      computeTimes();
      const x = meta?.Recording;
      clear(
        info,
        h(
          'dl',
          { class: 'facts' },
          x ? [h('dt', null, 'User'), h('dd', null, x.UserName), h('dt', null, 'Instance'), h('dd', { class: 'mono' }, `${x.OsUser}@${x.InstanceId}`), h('dt', null, 'From'), h('dd', { class: 'mono' }, x.SourceIp)] : null,
          h('dt', null, 'Started'),
          h('dd', null, fmtTime(cast.header.timestamp ? new Date(cast.header.timestamp * 1000) : null)),
          h('dt', null, 'Size'),
          h('dd', null, `${dims.cols}×${dims.rows}, ${events.length} events, ${fmtBytes(bytes.length)}`),
          x?.Error ? [h('dt', null, 'Ended early'), h('dd', null, x.Error)] : null,
        ),
      );
      reset();
      play.disabled = restart.disabled = false;
      if (!events.length) clear(info, emptyState('This recording has no events yet.'));
      play.focus();
    } catch (e) {
      const { message, detail } = describeError(e, 'read this recording');
      clear(info, errorBox(message, detail));
      controls.hidden = true;
      host.hidden = true;
    }
  });

  return {
    title: `Recording ${id}`,
    el,
    dispose() {
      disposed = true;
      window.clearTimeout(timer);
      term.dispose();
    },
  };
}
