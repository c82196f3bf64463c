import { ApiError, Session, signIn } from '../api';
import { clear, field, h } from '../dom';
import type { Page } from '../main';

export function signinPage(done: (s: Session) => void): Page {
  const user = h('input', { name: 'user', autocomplete: 'username', required: true, autocapitalize: 'off', spellcheck: 'false', autofocus: true });
  const password = h('input', { name: 'password', type: 'password', autocomplete: 'current-password', required: true });
  const otp = h('input', { name: 'otp', inputmode: 'numeric', autocomplete: 'one-time-code', pattern: '[0-9]{6}', maxlength: '6' });
  const submit = h('button', { type: 'submit', class: 'primary' }, 'Sign in');
  const msg = h('div', { class: 'msg', 'aria-live': 'assertive' });
  let timer = 0;

  const otpField = field('MFA code', otp, 'Six digits from your authenticator app, if you set one up.');

  function lockFor(seconds: number, text: string): void {
    window.clearInterval(timer);
    let left = Math.ceil(seconds);
    const tick = () => {
      if (left <= 0) {
        window.clearInterval(timer);
        submit.disabled = false;
        clear(msg);
        return;
      }
      submit.disabled = true;
      clear(msg, h('div', { class: 'alert error', role: 'alert' }, `${text} Try again in ${left} second${left === 1 ? '' : 's'}.`));
      left--;
    };
    tick();
    timer = window.setInterval(tick, 1000);
  }

  const form = h(
    'form',
    {
      class: 'card signin',
      novalidate: true,
      onsubmit: async (e: Event) => {
        e.preventDefault();
        if (!user.value || !password.value) {
          clear(msg, h('div', { class: 'alert error', role: 'alert' }, 'Enter your user name and password.'));
          (user.value ? password : user).focus();
          return;
        }
        submit.disabled = true;
        submit.textContent = 'Signing in…';
        clear(msg);
        try {
          const s = await signIn(user.value.trim(), password.value, otp.value.trim());
          window.clearInterval(timer);
          done(s);
          return;
        } catch (err) {
          password.value = password.value; // keep it: a missing MFA code should not cost a retype
          if (err instanceof ApiError) {
            switch (err.code) {
              case 'MFARequired':
                otpField.classList.add('attention');
                clear(msg, h('div', { class: 'alert info', role: 'alert' }, 'This account uses MFA. Enter the current code from your authenticator app.'));
                otp.focus();
                break;
              case 'SignInFailed':
                clear(msg, h('div', { class: 'alert error', role: 'alert' }, 'Sign-in failed: the user name, password or MFA code is wrong.'));
                password.value = '';
                otp.value = '';
                password.focus();
                break;
              case 'TooManyAttempts':
                password.value = '';
                lockFor(err.retryAfter ?? 60, 'Too many failed attempts.');
                submit.textContent = 'Sign in';
                return;
              default:
                clear(msg, h('div', { class: 'alert error', role: 'alert' }, `Sign-in failed: ${err.message || err.code}`));
            }
          } else {
            clear(msg, h('div', { class: 'alert error', role: 'alert' }, 'Cannot reach the server. Check your connection and try again.'));
          }
        }
        submit.disabled = false;
        submit.textContent = 'Sign in';
      },
    },
    h('h1', null, 'Sign in to Postern'),
    msg,
    field('User name', user),
    field('Password', password),
    otpField,
    submit,
  );
  return {
    title: 'Sign in',
    el: h('main', { class: 'page center' }, form),
    dispose: () => window.clearInterval(timer),
  };
}
