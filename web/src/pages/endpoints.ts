import { awsQuery, child, describeError, items, tagsOf, textOf } from '../api';
import { clear, emptyState, errorBox, fmtDuration, fmtTime, h, loading } from '../dom';
import type { Page, Route } from '../main';

export function endpointsPage(_r: Route): Page {
  const body = h('div', { class: 'results' }, loading('Loading endpoints…'));
  const refresh = h('button', { type: 'button' }, 'Refresh');

  async function load(): Promise<void> {
    clear(body, loading('Loading endpoints…'));
    try {
      const eps: Element[] = [];
      let token = '';
      for (let i = 0; i < 20; i++) {
        const doc = await awsQuery({ Action: 'DescribeInstanceConnectEndpoints', Version: '2016-11-15', MaxResults: 50, NextToken: token || undefined });
        eps.push(...items(child(doc.documentElement, 'instanceConnectEndpointSet')));
        const next = textOf(doc.documentElement, 'nextToken');
        if (!next || next === token) break;
        token = next;
      }
      if (!eps.length) {
        clear(body, emptyState('No Instance Connect Endpoints', 'Instances with a reachable private address need none; create one with postern endpoint create to reach private networks.'));
        return;
      }
      clear(
        body,
        h(
          'div',
          { class: 'table-wrap' },
          h(
            'table',
            { class: 'grid', id: 'endpoints' },
            h('thead', null, h('tr', null, ['Endpoint', 'State', 'Subnet', 'VPC', 'DNS name', 'Allowed ports', 'Max connections', 'Max tunnel duration', 'Live tunnels', 'Created', 'Tags'].map((c) => h('th', { scope: 'col' }, c)))),
            h(
              'tbody',
              null,
              eps.map((e) => {
                const state = textOf(e, 'state');
                const ports = items(child(e, 'posternAllowedPortSet')).map((p) => p.textContent?.trim());
                const maxDur = Number(textOf(e, 'posternMaxTunnelDuration'));
                const live = textOf(e, 'posternLiveTunnels');
                const created = textOf(e, 'createdAt');
                return h(
                  'tr',
                  null,
                  h('td', { class: 'mono' }, textOf(e, 'instanceConnectEndpointId')),
                  h('td', null, h('span', { class: `badge ${state === 'create-complete' ? 'ok' : state.endsWith('failed') ? 'bad' : 'warn'}`, title: textOf(e, 'stateMessage') }, state)),
                  h('td', { class: 'mono' }, textOf(e, 'subnetId')),
                  h('td', { class: 'mono' }, textOf(e, 'vpcId')),
                  h('td', { class: 'mono small-text' }, textOf(e, 'dnsName')),
                  h('td', null, ports.length ? ports.join(', ') : 'any'),
                  h('td', null, textOf(e, 'posternMaxConnections') || '—'),
                  h('td', null, maxDur ? fmtDuration(maxDur) : '—'),
                  h('td', null, live || h('span', { class: 'muted', title: 'The server does not report live tunnels' }, '—')),
                  h('td', null, created ? fmtTime(new Date(created)) : ''),
                  h('td', { class: 'tags' }, tagsOf(e).map((t) => h('span', { class: 'tag' }, `${t.key}=${t.value}`))),
                );
              }),
            ),
          ),
        ),
      );
    } catch (e) {
      const { message, detail } = describeError(e, 'describe Instance Connect Endpoints');
      clear(body, errorBox(message, detail));
    }
  }
  refresh.addEventListener('click', load);
  void load();
  return { title: 'Endpoints', el: h('main', { class: 'page' }, h('div', { class: 'page-head' }, h('h1', null, 'Instance Connect Endpoints'), refresh), body) };
}
