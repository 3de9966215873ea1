/**
 * The sidecar's operator API (/admin/api/..., sidecar/entry/web/admin.py) with the signed-in
 * user's token. Its errors are FHIR OperationOutcomes; 401 means the sign-in has ended, 403
 * that the account has no operator role.
 */
import { SignedOut, Unreachable } from '../errors.js';

/** The account is signed in but has no imaging-operator role (HTTP 403). */
export class NoRole extends Error {}

/** The API refused or failed (any other status): the OperationOutcome's words. */
export class Refused extends Error {
  /** @param {string} message @param {number} status */
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export class OperatorApi {
  /**
   * @param {string} base the API's root, e.g. "api" (relative to /admin/)
   * @param {() => string|null} token the current access token, null once it has expired
   */
  constructor(base, token) {
    this.base = base;
    this.token = token;
  }

  /** @param {string} path @param {'GET'|'POST'} [method] */
  async call(path, method = 'GET') {
    const token = this.token();
    if (!token) throw new SignedOut('Your sign-in has ended.');
    let response;
    try {
      response = await fetch(`${this.base}/${path}`, {
        method,
        headers: { Authorization: `Bearer ${token}`, Accept: 'application/json' },
        credentials: 'omit',
        cache: 'no-store',
      });
    } catch {
      throw new Unreachable('The sidecar cannot be reached.');
    }
    if (response.ok) return response.json();
    const said = await diagnostics(response);
    if (response.status === 401) throw new SignedOut(said || 'Your sign-in has ended or was not accepted.');
    if (response.status === 403) throw new NoRole(said || 'This account has no operator role.');
    throw new Refused(said || `The sidecar answered ${response.status}.`, response.status);
  }

  overview() {
    return this.call('overview');
  }

  /** @param {{kind: 'patient'|'study', value: string}} what */
  lookup(what) {
    return this.call(`lookup?${what.kind}=${encodeURIComponent(what.value)}`);
  }

  /** @param {string} patientId */
  retry(patientId) {
    return this.call(`dead-letters/${encodeURIComponent(patientId)}/retry`, 'POST');
  }

  /** @param {string} patientId */
  resync(patientId) {
    return this.call(`patients/${encodeURIComponent(patientId)}/resync`, 'POST');
  }
}

/** The diagnostics of an OperationOutcome answer ('' when it is something else). */
async function diagnostics(response) {
  try {
    const outcome = await response.json();
    return (outcome.issue || []).map((i) => i.diagnostics).filter(Boolean).join(' ');
  } catch {
    return '';
  }
}
