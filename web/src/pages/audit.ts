import { awsJSON, describeError } from '../api';
import { clear, emptyState, errorBox, field, fmtTime, h, loading } from '../dom';
import type { Page, Route } from '../main';

const TARGET = 'com.amazonaws.cloudtrail.v20131101.CloudTrail_20131101.LookupEvents';

interface TrailEvent {
  EventId: string;
  EventName: string;
  EventTime: number;
  EventSource: string;
  Username?: string;
  Resources: { ResourceType: string; ResourceName: string }[];
  CloudTrailEvent: string;
}

export function auditPage(r: Route): Page {
  // LookupEvents takes one lookup attribute; errors-only is Postern's extension.
  const key = h(
    'select',
    { name: 'attr' },
    h('option', { value: 'EventName' }, 'Event name'),
    h('option', { value: 'Username' }, 'User name'),
    h('option', { value: 'ResourceName' }, 'Resource'),
  );
  key.value = r.params.get('attr') || 'EventName';
  const value = h('input', { name: 'value', autocomplete: 'off', spellcheck: 'false', placeholder: 'e.g. SendSSHPublicKey', value: r.params.get('value') ?? '' });
  const errorsOnly = h('input', { type: 'checkbox', name: 'errorsOnly', checked: r.params.get('errors') === '1' });
  const body = h('div', { class: 'results' });
  const detail = h('section', { class: 'record', 'aria-label': 'Selected record', hidden: true });
  const newer = h('button', { type: 'button', disabled: true }, '← Newer');
  const older = h('button', { type: 'button', disabled: true }, 'Older →');
  const tokens: string[] = ['']; // the token of each page seen; the last is the current
  let next = '';

  function showRecord(ev: TrailEvent, row: HTMLElement): void {
    body.querySelectorAll('tr[aria-selected]').forEach((tr) => tr.removeAttribute('aria-selected'));
    row.setAttribute('aria-selected', 'true');
    let pretty = ev.CloudTrailEvent;
    try {
      pretty = JSON.stringify(JSON.parse(ev.CloudTrailEvent), null, 2);
    } catch {
      // show it as stored
    }
    detail.hidden = false;
    clear(
      detail,
      h('div', { class: 'page-head' }, h('h2', null, `${ev.EventName} · ${fmtTime(new Date(ev.EventTime * 1000))}`), h('button', { type: 'button', onclick: () => (detail.hidden = true) }, 'Close')),
      h('pre', { class: 'json', tabindex: '0' }, pretty),
    );
    detail.scrollIntoView({ block: 'nearest' });
  }

  async function load(): Promise<void> {
    clear(body, loading('Looking up events…'));
    detail.hidden = true;
    newer.disabled = older.disabled = true;
    const v = value.value.trim();
    const p = new URLSearchParams();
    if (v) p.set('attr', key.value), p.set('value', v);
    if (errorsOnly.checked) p.set('errors', '1');
    const hash = '#/audit' + (p.toString() ? '?' + p : '');
    if (location.hash !== hash) history.replaceState(null, '', hash);
    try {
      const token = tokens[tokens.length - 1];
      const out = await awsJSON<{ Events: TrailEvent[]; NextToken?: string }>(TARGET, {
        LookupAttributes: v ? [{ AttributeKey: key.value, AttributeValue: v }] : undefined,
        ErrorsOnly: errorsOnly.checked || undefined,
        MaxResults: 50,
        NextToken: token || undefined,
      });
      next = out.NextToken || '';
      const evs = out.Events || [];
      if (!evs.length) {
        clear(body, emptyState('No events', v || errorsOnly.checked ? 'Nothing matches these filters.' : 'The audit trail is empty.'));
      } else {
        clear(
          body,
          h(
            'div',
            { class: 'table-wrap' },
            h(
              'table',
              { class: 'grid selectable', id: 'audit' },
              h('thead', null, h('tr', null, ['Time', 'Event', 'User', 'Source', 'Result', 'Resources'].map((c) => h('th', { scope: 'col' }, c)))),
              h(
                'tbody',
                null,
                evs.map((ev) => {
                  let rec: any = {};
                  try {
                    rec = JSON.parse(ev.CloudTrailEvent);
                  } catch {
                    // shown raw when opened
                  }
                  const failed = rec.errorCode || rec.responseElements?.ConsoleLogin === 'Failure';
                  const open = h('button', { type: 'button', class: 'link' }, ev.EventName);
                  const row = h(
                    'tr',
                    { 'data-event-id': ev.EventId },
                    h('td', null, fmtTime(new Date(ev.EventTime * 1000))),
                    h('td', null, open),
                    h('td', { class: 'nowrap' }, ev.Username || ''),
                    h('td', { class: 'mono' }, rec.sourceIPAddress || ''),
                    h('td', null, failed ? h('span', { class: 'badge bad', title: rec.errorMessage || '' }, rec.errorCode || 'Failure') : h('span', { class: 'badge ok' }, 'OK')),
                    h('td', { class: 'mono small-text' }, (ev.Resources || []).map((x) => h('div', null, x.ResourceName))),
                  );
                  open.addEventListener('click', () => showRecord(ev, row));
                  return row;
                }),
              ),
            ),
          ),
        );
      }
    } catch (e) {
      const { message, detail: d } = describeError(e, 'look up audit events');
      clear(body, errorBox(message, d));
      next = '';
    }
    newer.disabled = tokens.length <= 1;
    older.disabled = !next;
  }

  newer.addEventListener('click', () => {
    if (tokens.length > 1) tokens.pop();
    void load();
  });
  older.addEventListener('click', () => {
    if (next) tokens.push(next);
    void load();
  });
  void load();

  return {
    title: 'Audit',
    el: h(
      'main',
      { class: 'page' },
      h('div', { class: 'page-head' }, h('h1', null, 'Audit trail')),
      h(
        'form',
        {
          class: 'filters',
          role: 'search',
          onsubmit: (e: Event) => {
            e.preventDefault();
            tokens.length = 1;
            void load();
          },
        },
        field('Filter by', key),
        field('Value', value),
        h('label', { class: 'check' }, errorsOnly, ' Errors only'),
        h('button', { type: 'submit', class: 'primary' }, 'Look up'),
      ),
      body,
      h('div', { class: 'pager' }, newer, older),
      detail,
    ),
  };
}
