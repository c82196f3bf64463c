import { awsQuery, child, describeError, items, path, textOf } from '../api';
import { clear, emptyState, errorBox, fmtTime, h, loading } from '../dom';
import type { Page, Route } from '../main';

const V = '2010-05-08';

/** Calls an IAM List action, following Marker, and returns the members of the named list. */
async function listAll(action: string, list: string, extra: Record<string, string> = {}): Promise<Element[]> {
  const out: Element[] = [];
  let marker = '';
  for (let i = 0; i < 50; i++) {
    const doc = await awsQuery({ Action: action, Version: V, ...extra, Marker: marker || undefined });
    const result = child(doc.documentElement, `${action}Result`);
    out.push(...items(child(result, list)));
    marker = textOf(result, 'IsTruncated') === 'true' ? textOf(result, 'Marker') : '';
    if (!marker) break;
  }
  return out;
}

async function policyDoc(action: 'GetUserPolicy' | 'GetGroupPolicy', owner: Record<string, string>, name: string): Promise<string> {
  const doc = await awsQuery({ Action: action, Version: V, ...owner, PolicyName: name });
  let text = textOf(path(doc.documentElement, `${action}Result`), 'PolicyDocument');
  try {
    text = decodeURIComponent(text);
  } catch {
    // IAM URL-encodes documents; take it as it is otherwise
  }
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

export function iamPage(r: Route): Page {
  const kind = r.rest[0] === 'groups' ? 'groups' : 'users';
  const name = r.rest[1] ?? '';
  const body = h('div', { class: 'results' }, loading());
  const tabs = h(
    'nav',
    { class: 'tabs', 'aria-label': 'Identities' },
    h('a', { href: '#/iam/users', 'aria-current': kind === 'users' ? 'page' : undefined }, 'Users'),
    h('a', { href: '#/iam/groups', 'aria-current': kind === 'groups' ? 'page' : undefined }, 'Groups'),
  );
  const el = h('main', { class: 'page' }, h('div', { class: 'page-head' }, h('h1', null, 'Users, groups and policies'), h('span', { class: 'muted' }, 'Read-only')), tabs, body);
  if (name) void detail(kind, name, body);
  else void list(kind, body);
  return { title: 'Users & policies', el };
}

async function list(kind: 'users' | 'groups', body: HTMLElement): Promise<void> {
  const what = kind === 'users' ? 'list users' : 'list groups';
  try {
    const rows = kind === 'users' ? await listAll('ListUsers', 'Users') : await listAll('ListGroups', 'Groups');
    const nameKey = kind === 'users' ? 'UserName' : 'GroupName';
    if (!rows.length) {
      clear(body, emptyState(kind === 'users' ? 'No users' : 'No groups'));
      return;
    }
    clear(
      body,
      h(
        'div',
        { class: 'table-wrap' },
        h(
          'table',
          { class: 'grid' },
          h('thead', null, h('tr', null, ['Name', 'ARN', 'Created'].map((c) => h('th', { scope: 'col' }, c)))),
          h(
            'tbody',
            null,
            rows.map((u) => {
              const n = textOf(u, nameKey);
              return h(
                'tr',
                null,
                h('td', null, h('a', { href: `#/iam/${kind}/${encodeURIComponent(n)}` }, n)),
                h('td', { class: 'mono small-text' }, textOf(u, 'Arn')),
                h('td', null, fmtTime(new Date(textOf(u, 'CreateDate')))),
              );
            }),
          ),
        ),
      ),
    );
  } catch (e) {
    const { message, detail } = describeError(e, what);
    clear(body, errorBox(message, detail));
  }
}

async function detail(kind: 'users' | 'groups', name: string, body: HTMLElement): Promise<void> {
  const user = kind === 'users';
  const owner: Record<string, string> = user ? { UserName: name } : { GroupName: name };
  const sections: HTMLElement[] = [h('h2', null, `${user ? 'User' : 'Group'} ${name}`), h('p', null, h('a', { href: `#/iam/${kind}` }, `All ${kind}`))];
  clear(body, sections, loading());
  try {
    if (user) {
      const groups = await listAll('ListGroupsForUser', 'Groups', owner).catch((e) => e as Error);
      sections.push(
        h('h3', null, 'Groups'),
        groups instanceof Error
          ? errorBox(describeError(groups, 'list this user’s groups').message)
          : groups.length
            ? h('ul', null, groups.map((g) => h('li', null, h('a', { href: `#/iam/groups/${encodeURIComponent(textOf(g, 'GroupName'))}` }, textOf(g, 'GroupName')))))
            : h('p', { class: 'muted' }, 'In no group.'),
      );
    } else {
      const doc = await awsQuery({ Action: 'GetGroup', Version: V, GroupName: name }).catch((e) => e as Error);
      const members = doc instanceof Error ? doc : items(path(doc.documentElement, 'GetGroupResult', 'Users'));
      sections.push(
        h('h3', null, 'Members'),
        members instanceof Error
          ? errorBox(describeError(members, 'read this group').message)
          : members.length
            ? h('ul', null, members.map((u) => h('li', null, h('a', { href: `#/iam/users/${encodeURIComponent(textOf(u, 'UserName'))}` }, textOf(u, 'UserName')))))
            : h('p', { class: 'muted' }, 'No members.'),
      );
    }
    sections.push(h('h3', null, 'Inline policies'));
    const names = await listAll(user ? 'ListUserPolicies' : 'ListGroupPolicies', 'PolicyNames', owner);
    if (!names.length) sections.push(h('p', { class: 'muted' }, 'No inline policies.'));
    for (const n of names) {
      const pn = n.textContent?.trim() ?? '';
      const doc = await policyDoc(user ? 'GetUserPolicy' : 'GetGroupPolicy', owner, pn).catch((e) => e as Error);
      sections.push(
        h(
          'details',
          { open: true, class: 'policy' },
          h('summary', null, pn),
          doc instanceof Error ? errorBox(describeError(doc, `read policy ${pn}`).message) : h('pre', { class: 'json', tabindex: '0' }, doc),
        ),
      );
    }
    clear(body, sections);
  } catch (e) {
    const { message, detail: d } = describeError(e, `read ${user ? 'this user' : 'this group'}`);
    clear(body, sections, errorBox(message, d));
  }
}
