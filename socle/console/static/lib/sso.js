// Single sign-on: OAuth 2 authorisation code flow with PKCE (RFC 7636), the console being a public client.
// The verifier and state stay in sessionStorage between the redirect and the return; the token endpoint is
// called from the browser (the CSP allows exactly its origin), and its token becomes the bearer token.
const PENDING = 'socle.sso';

function base64url(bytes) {
  let text = '';
  for (const b of new Uint8Array(bytes)) text += String.fromCharCode(b);
  return btoa(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

function random(n) {
  return base64url(crypto.getRandomValues(new Uint8Array(n)));
}

function redirectUri() {
  return `${location.origin}/`;
}

export async function startSso(sso) {
  if (!crypto.subtle) throw new Error('SSO needs a secure context (HTTPS or localhost).');
  const verifier = random(48);
  const state = random(24);
  const challenge = base64url(await crypto.subtle.digest('SHA-256', new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, hash: location.hash }));
  const url = new URL(sso.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: sso.client_id,
    redirect_uri: redirectUri(),
    scope: sso.scopes,
    state,
    code_challenge: challenge,
    code_challenge_method: 'S256',
  }).toString();
  location.assign(url.toString());
}

// On return from the identity provider (?code=...&state=...): exchange the code, clean the URL.
// Returns {token, hash} or null when this page load is not an SSO return.
export async function finishSso(sso) {
  const params = new URLSearchParams(location.search);
  if (!params.has('code') && !params.has('error')) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || 'null');
  sessionStorage.removeItem(PENDING);
  history.replaceState(null, '', `/${(pending && pending.hash) || ''}`);
  if (params.has('error')) throw new Error(params.get('error_description') || params.get('error'));
  if (!sso || !pending || pending.state !== params.get('state')) throw new Error('sso_state_mismatch');
  const response = await fetch(sso.token_endpoint, {
    method: 'POST',
    headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({
      grant_type: 'authorization_code',
      code: params.get('code'),
      redirect_uri: redirectUri(),
      client_id: sso.client_id,
      code_verifier: pending.verifier,
    }),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error_description || body.error || `HTTP ${response.status}`);
  const token = body[sso.token] || body.access_token;
  if (!token) throw new Error('sso_no_token');
  return { token, hash: pending.hash };
}
