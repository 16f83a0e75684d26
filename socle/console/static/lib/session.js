// The signed-in session, kept in sessionStorage (gone with the tab): the bearer token (an API key or an
// SSO token) and, for SSO users in several teams, the team they act for.
const KEY = 'socle.session';
const listeners = new Set();

function read() {
  try {
    return JSON.parse(sessionStorage.getItem(KEY)) || {};
  } catch {
    return {};
  }
}

export const session = {
  get: read,
  set(value) {
    sessionStorage.setItem(KEY, JSON.stringify({ ...read(), ...value }));
    for (const listener of listeners) listener(read());
  },
  clear(reason) {
    sessionStorage.removeItem(KEY);
    for (const listener of listeners) listener({ reason });
  },
  expired() {
    if (read().token) this.clear('expired');
  },
  subscribe(listener) {
    listeners.add(listener);
    return () => listeners.delete(listener);
  },
};
