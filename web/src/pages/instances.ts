import { Tag, awsQuery, child, describeError, items, tagsOf, textOf } from '../api';
import { clear, emptyState, errorBox, field, fmtTime, h, loading } from '../dom';
import { Route, Page, go } from '../main';

export interface Instance {
  id: string;
  name: string;
  state: string;
  privateIp: string;
  publicIp: string;
  subnet: string;
  vpc: string;
  type: string;
  tags: Tag[];
  heartbeat: Date | null;
}

const OS_USER_KEY = 'postern.osUser';

export function rememberedOSUser(): string {
  return localStorage.getItem(OS_USER_KEY) || 'ec2-user';
}

function parseInstances(doc: Document): { instances: Instance[]; next: string } {
  const root = doc.documentElement;
  const out: Instance[] = [];
  for (const r of items(child(root, 'reservationSet'))) {
    for (const i of items(child(r, 'instancesSet'))) {
      const tags = tagsOf(i);
      // DescribeInstances has no heartbeat in EC2's shape; show one if the server adds it.
      const hb = textOf(i, 'posternLastHeartbeat') || textOf(i, 'lastHeartbeat');
      out.push({
        id: textOf(i, 'instanceId'),
        name: tags.find((t) => t.key === 'Name')?.value ?? '',
        state: textOf(i, 'instanceState', 'name'),
        privateIp: textOf(i, 'privateIpAddress'),
        publicIp: textOf(i, 'ipAddress'),
        subnet: textOf(i, 'subnetId'),
        vpc: textOf(i, 'vpcId'),
        type: textOf(i, 'instanceType'),
        tags,
        heartbeat: hb ? new Date(hb) : null,
      });
    }
  }
  return { instances: out, next: textOf(root, 'nextToken') };
}

async function describeAll(): Promise<Instance[]> {
  const all: Instance[] = [];
  let token = '';
  for (let page = 0; page < 50; page++) {
    const doc = await awsQuery({ Action: 'DescribeInstances', Version: '2016-11-15', MaxResults: 1000, NextToken: token || undefined });
    const { instances, next } = parseInstances(doc);
    all.push(...instances);
    if (!next || next === token) break;
    token = next;
  }
  return all;
}

/** Parses "key=value" or "key" (any value). */
function parseTagFilter(s: string): { key: string; value?: string } | null {
  s = s.trim();
  if (!s) return null;
  const eq = s.indexOf('=');
  if (eq < 0) return { key: s };
  return { key: s.slice(0, eq).trim(), value: s.slice(eq + 1).trim() };
}

function matches(i: Instance, q: string, tag: { key: string; value?: string } | null): boolean {
  if (tag) {
    const t = i.tags.find((t) => t.key === tag.key);
    if (!t) return false;
    if (tag.value !== undefined && t.value !== tag.value) return false;
  }
  if (!q) return true;
  const hay = [i.id, i.name, i.state, i.privateIp, i.publicIp, i.subnet, i.vpc, ...i.tags.map((t) => `${t.key}=${t.value}`)].join(' ').toLowerCase();
  return q
    .toLowerCase()
    .split(/\s+/)
    .filter(Boolean)
    .every((w) => hay.includes(w));
}

function stateBadge(state: string): HTMLElement {
  const cls = state === 'running' ? 'ok' : state === 'pending' || state === 'stopping' ? 'warn' : 'off';
  return h('span', { class: `badge ${cls}` }, state || 'unknown');
}

export function instancesPage(r: Route): Page {
  const search = h('input', { type: 'search', name: 'q', placeholder: 'Name, id, address…', value: r.params.get('q') ?? '', autocomplete: 'off' });
  const tagInput = h('input', { type: 'search', name: 'tag', placeholder: 'key=value', value: r.params.get('tag') ?? '', autocomplete: 'off', spellcheck: 'false' });
  const refresh = h('button', { type: 'button' }, 'Refresh');
  const body = h('div', { class: 'results' }, loading('Loading instances…'));
  const count = h('p', { class: 'count', 'aria-live': 'polite' });
  const dialog = connectDialog();
  let all: Instance[] = [];

  function renderTable(): void {
    const tag = parseTagFilter(tagInput.value);
    const shown = all.filter((i) => matches(i, search.value.trim(), tag));
    count.textContent = all.length ? `${shown.length} of ${all.length} instance${all.length === 1 ? '' : 's'}` : '';
    // Keep the filters in the address so a reload or a link shows the same view.
    const p = new URLSearchParams();
    if (search.value.trim()) p.set('q', search.value.trim());
    if (tagInput.value.trim()) p.set('tag', tagInput.value.trim());
    const hash = '#/instances' + (p.toString() ? '?' + p : '');
    if (location.hash !== hash) history.replaceState(null, '', hash);
    if (!all.length) {
      clear(body, emptyState('No instances yet', 'Register a server with an activation code (postern agent register) and it shows up here.'));
      return;
    }
    if (!shown.length) {
      clear(body, emptyState('No instance matches', 'Change the search or the tag filter.'));
      return;
    }
    const table = h(
      'table',
      { class: 'grid', id: 'instances' },
      h('caption', { class: 'sr-only' }, 'Instances'),
      h('thead', null, h('tr', null, ['Name', 'Instance ID', 'State', 'Private address', 'Public address', 'Subnet', 'Tags', 'Last heartbeat', ''].map((c) => h('th', { scope: 'col' }, c)))),
      h(
        'tbody',
        null,
        shown.map((i) =>
          h(
            'tr',
            { 'data-instance-id': i.id },
            h('td', { class: 'nowrap' }, i.name || h('span', { class: 'muted' }, '—')),
            h('td', { class: 'mono nowrap' }, i.id),
            h('td', null, stateBadge(i.state)),
            h('td', { class: 'mono nowrap' }, i.privateIp),
            h('td', { class: 'mono nowrap' }, i.publicIp),
            h('td', { class: 'mono nowrap' }, i.subnet),
            h(
              'td',
              { class: 'tags' },
              i.tags
                .filter((t) => t.key !== 'Name')
                .map((t) =>
                  h(
                    'button',
                    { type: 'button', class: 'tag', title: `Filter by ${t.key}=${t.value}`, onclick: () => { tagInput.value = `${t.key}=${t.value}`; renderTable(); } },
                    `${t.key}=${t.value}`,
                  ),
                ),
            ),
            h('td', null, i.heartbeat ? fmtTime(i.heartbeat) : h('span', { class: 'muted' }, '—')),
            h(
              'td',
              null,
              h('button', { type: 'button', class: 'primary small', 'aria-label': `Connect to ${i.name || i.id}`, onclick: () => dialog.open(i) }, 'Connect'),
            ),
          ),
        ),
      ),
    );
    clear(body, h('div', { class: 'table-wrap' }, table));
  }

  async function load(): Promise<void> {
    refresh.disabled = true;
    clear(body, loading('Loading instances…'));
    try {
      all = await describeAll();
      all.sort((a, b) => (a.name || '~' + a.id).localeCompare(b.name || '~' + b.id));
      renderTable();
    } catch (e) {
      const { message, detail } = describeError(e, 'describe instances');
      count.textContent = '';
      clear(body, errorBox(message, detail));
    } finally {
      refresh.disabled = false;
    }
  }

  search.addEventListener('input', renderTable);
  tagInput.addEventListener('input', renderTable);
  refresh.addEventListener('click', load);
  void load();

  const el = h(
    'main',
    { class: 'page' },
    h('div', { class: 'page-head' }, h('h1', null, 'Instances'), refresh),
    h(
      'form',
      { class: 'filters', role: 'search', onsubmit: (e: Event) => e.preventDefault() },
      field('Search', search),
      field('Tag filter', tagInput, 'key=value, or just key'),
    ),
    count,
    body,
    dialog.el,
  );
  return { title: 'Instances', el };
}

function connectDialog(): { el: HTMLDialogElement; open: (i: Instance) => void } {
  const osUser = h('input', { name: 'osUser', required: true, autocomplete: 'off', spellcheck: 'false', autocapitalize: 'off', pattern: '[a-z_][a-z0-9_.-]*[$]?' });
  const title = h('h2', { id: 'connect-title' });
  const note = h('p', { class: 'muted' });
  let target: Instance | null = null;
  const dlg = h(
    'dialog',
    { 'aria-labelledby': 'connect-title', class: 'card' },
    h(
      'form',
      {
        method: 'dialog',
        onsubmit: (e: Event) => {
          e.preventDefault();
          const u = osUser.value.trim();
          if (!u || !target) return;
          localStorage.setItem(OS_USER_KEY, u);
          dlg.close();
          go(`#/terminal?instanceId=${encodeURIComponent(target.id)}&osUser=${encodeURIComponent(u)}`);
        },
      },
      title,
      note,
      field('OS user', osUser, 'The account to log in as on the instance.'),
      h(
        'div',
        { class: 'actions' },
        h('button', { type: 'button', onclick: () => dlg.close() }, 'Cancel'),
        h('button', { type: 'submit', class: 'primary', id: 'connect-submit' }, 'Connect'),
      ),
    ),
  );
  return {
    el: dlg,
    open(i: Instance) {
      target = i;
      title.textContent = `Connect to ${i.name || i.id}`;
      note.textContent = i.state === 'running' ? `${i.id} · ${i.privateIp}` : `${i.id} is ${i.state || 'in an unknown state'}; the connection may fail.`;
      osUser.value = rememberedOSUser();
      dlg.showModal();
      osUser.select();
    },
  };
}
