/**
 * Sign-in through SMART App Launch with SMART's own client library (fhirclient):
 * authorization code with PKCE S256 required, against the authorization server the FHIR
 * server's /.well-known/smart-configuration names. No OAuth is written here.
 */
import FHIR from 'fhirclient';

/** What each kind of user asks for (the authorization server grants no more). */
export const SCOPES = {
  patient: 'openid fhirUser launch/patient patient/*.rs',
  clinician: 'openid fhirUser user/*.rs',
};
/** fhirclient keeps its state in sessionStorage under this key. */
const SMART_KEY = 'SMART_KEY';
/** Where to go back to after the round trip through the authorization server. */
const RETURN_KEY = 'viewer.returnTo';

/** This page's own URL without query or fragment: the redirect_uri. */
function viewerUrl() {
  const url = new URL(window.location.href);
  url.search = '';
  url.hash = '';
  return url.toString();
}

/**
 * Send the browser to the authorization server.
 * @param {{fhirBaseUrl: string, clientId: string}} config
 * @param {'patient'|'clinician'} role
 */
export function signIn(config, role) {
  sessionStorage.setItem(RETURN_KEY, window.location.hash);
  return FHIR.oauth2.authorize({
    iss: config.fhirBaseUrl,
    clientId: config.clientId,
    scope: SCOPES[role],
    redirectUri: viewerUrl(),
    pkceMode: 'required',
  });
}

/**
 * An EHR launch (?iss=...&launch=...): only for our own FHIR server, so the token of a
 * launch elsewhere is never asked for here.
 * @param {{fhirBaseUrl: string, clientId: string}} config
 * @param {URLSearchParams} params
 */
export function launchFromEhr(config, params) {
  const iss = (params.get('iss') || '').replace(/\/+$/, '');
  if (iss !== config.fhirBaseUrl) {
    throw new Error(`This viewer works with ${config.fhirBaseUrl}, not with ${iss}.`);
  }
  return FHIR.oauth2.authorize({
    iss,
    launch: params.get('launch') || undefined,
    clientId: config.clientId,
    scope: `launch ${SCOPES.clinician}`,
    redirectUri: viewerUrl(),
    pkceMode: 'required',
  });
}

/** The URL says the authorization server sent the browser back (with a code or an error). */
export function isRedirectBack(params) {
  return params.has('state') && (params.has('code') || params.has('error'));
}

/**
 * A session this tab keeps for this page. The viewer (/viewer/) and the operator page
 * (/admin/) share the tab's sessionStorage, and fhirclient keeps one session per tab: a
 * session signed in for the other page (its redirect_uri) is not this page's.
 */
export function hasStoredSession() {
  try {
    const key = JSON.parse(sessionStorage.getItem(SMART_KEY) || 'null');
    const state = key ? JSON.parse(sessionStorage.getItem(key) || 'null') : null;
    return Boolean(state) && state.redirectUri === viewerUrl();
  } catch {
    return false;
  }
}

/**
 * The signed-in client: after the redirect back (the code is exchanged here) or from the
 * session kept in this tab.
 * @returns {Promise<{client: any, returnTo: string}>}
 */
export async function completeSignIn() {
  const client = await FHIR.oauth2.ready();
  // fhirclient keeps the URL the page was loaded with: the redirect back, whose query
  // carries the authorization server's `iss` (RFC 9207, Keycloak sends it). A later
  // authorize() in this page (Sign in again) reads that `iss` as the FHIR server's and
  // fails ("Failed to fetch the conformance statement from .../realms/..."). The code is
  // used now: forget the query.
  const loaded = client.environment?.getUrl?.();
  if (loaded) loaded.search = '';
  const returnTo = sessionStorage.getItem(RETURN_KEY) || '';
  sessionStorage.removeItem(RETURN_KEY);
  return { client, returnTo };
}

/** The claims of a JWT (not verified: the servers verify; the page only reads context). */
export function claimsOf(jwt) {
  try {
    const payload = jwt.split('.')[1].replace(/-/g, '+').replace(/_/g, '/');
    const json = decodeURIComponent(
      Array.from(atob(payload), (c) => `%${c.charCodeAt(0).toString(16).padStart(2, '0')}`).join(''),
    );
    return JSON.parse(json);
  } catch {
    return {};
  }
}

/**
 * Who is signed in and in which patient's context. SMART puts `patient` in the token
 * response; Keycloak puts it in the tokens' claims instead, so those are read too.
 * @param {any} client
 */
export function userOf(client) {
  const response = client.state.tokenResponse || {};
  const idClaims = response.id_token ? claimsOf(response.id_token) : {};
  const accessClaims = response.access_token ? claimsOf(response.access_token) : {};
  const fhirUser = String(idClaims.fhirUser || accessClaims.fhirUser || '')
    .split('/')
    .slice(-2)
    .join('/');
  return {
    patientId: response.patient || idClaims.patient || accessClaims.patient || null,
    fhirUser,
    name: idClaims.name || idClaims.preferred_username || accessClaims.preferred_username || '',
    scope: response.scope || client.state.scope || '',
  };
}

/**
 * The access token for the imaging gateway, or null when it has expired (the user signs
 * in again: the viewer asks for no refresh token).
 * @param {any} client
 */
export function accessToken(client) {
  const token = client.state.tokenResponse?.access_token;
  const expiresAt = client.state.expiresAt || 0;
  if (!token || (expiresAt && expiresAt < Date.now() / 1000)) return null;
  return token;
}

/**
 * Forget the session in this tab, then end it at the authorization server too (else the
 * next sign-in would silently be the same person); back to the viewer's sign-in page.
 * @param {{issuer: string, clientId: string}} config
 * @param {any} [client]
 */
export async function signOut(config, client) {
  const idToken = client?.state?.tokenResponse?.id_token;
  sessionStorage.clear(); // fhirclient's state and ours: this tab keeps nothing
  let endSession = null;
  try {
    const discovery = await fetch(`${config.issuer}/.well-known/openid-configuration`);
    if (discovery.ok) endSession = (await discovery.json()).end_session_endpoint || null;
  } catch {
    // the authorization server is down: the tab's session is gone all the same
  }
  if (!endSession) {
    window.location.assign(viewerUrl());
    return;
  }
  const url = new URL(endSession);
  url.searchParams.set('client_id', config.clientId);
  url.searchParams.set('post_logout_redirect_uri', viewerUrl());
  if (idToken) url.searchParams.set('id_token_hint', idToken);
  window.location.assign(url.toString());
}
