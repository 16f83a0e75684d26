// The console calls the public API like any client: the user's key or SSO token as a bearer token, and,
// for an SSO user in several teams, the team it acts for. Errors arrive in OpenAI's format.
import { session } from './session.js';

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || null;
    this.param = error.param || null;
    this.type = error.type || null;
  }
}

function headers(extra) {
  const result = { ...extra };
  const { token, team } = session.get();
  if (token) result.Authorization = `Bearer ${token}`;
  if (team) result['X-Socle-Team'] = team;
  return result;
}

function withQuery(path, query) {
  if (!query) return path;
  const params = new URLSearchParams();
  for (const [key, value] of Object.entries(query)) {
    if (value !== undefined && value !== null && value !== '') params.set(key, String(value));
  }
  const text = params.toString();
  return text ? `${path}${path.includes('?') ? '&' : '?'}${text}` : path;
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  if (response.status === 401) session.expired();
  return new ApiError(response.status, body);
}

// api('/v1/admin/teams'), api('/v1/admin/keys', {method: 'POST', body: {...}}), api(path, {form: FormData}).
export async function api(path, { method = 'GET', body, form, query, signal, raw = false } = {}) {
  const init = { method, signal, headers: headers(body !== undefined ? { 'Content-Type': 'application/json' } : {}) };
  if (body !== undefined) init.body = JSON.stringify(body);
  if (form !== undefined) init.body = form;
  const response = await fetch(withQuery(path, query), init);
  if (!response.ok) throw await failure(response);
  if (raw) return response;
  if (response.status === 204) return null;
  return response.json();
}

// Server-sent events of an OpenAI-style stream: calls onEvent(parsed JSON) per `data:` line until [DONE].
// Aborting `signal` (the stop button) closes the connection, which cancels the generation server-side.
export async function stream(path, body, onEvent, signal) {
  const response = await fetch(path, {
    method: 'POST',
    signal,
    headers: headers({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
    body: JSON.stringify({ ...body, stream: true }),
  });
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf('\n\n')) >= 0) {
      const event = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      for (const line of event.split('\n')) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') return;
        const parsed = JSON.parse(data);
        if (parsed.error) throw new ApiError(500, parsed);
        onEvent(parsed);
      }
    }
  }
}
