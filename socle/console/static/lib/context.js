// What every page may read: the caller (GET /v1/me: identity, team, roles, actions) and the console's
// configuration; and how to move to another page.
import { createContext, useContext } from './html.js';

export const AppContext = createContext({ me: null, config: null });

export function useApp() {
  return useContext(AppContext);
}

export function can(me, action) {
  return Boolean(me && me.actions.includes(action));
}

export function navigate(path, params) {
  const query = params ? `?${new URLSearchParams(params)}` : '';
  location.hash = `#/${path}${query}`;
}
