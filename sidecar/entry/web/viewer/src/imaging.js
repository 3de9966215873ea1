/**
 * The imaging gateway (DICOMweb, PS3.18) with the user's token. An <img src> cannot carry
 * an Authorization header, so images are fetched and shown from blob: URLs.
 */
import { classify, NotAvailable, SignedOut } from './errors.js';

export class Gateway {
  /** @param {() => string|null} token the current access token, null once it has expired */
  constructor(token) {
    this.token = token;
    /** @type {Map<string, Promise<string>>} url -> blob URL, most recently used last */
    this.images = new Map();
    this.limit = 80; // blob URLs kept: a few series' worth of paging back and forth
  }

  /** @param {string} url @param {string} accept @param {string} what */
  async get(url, accept, what) {
    const token = this.token();
    if (!token) throw new SignedOut('Your sign-in has ended.');
    let response;
    try {
      response = await fetch(url, {
        headers: { Authorization: `Bearer ${token}`, Accept: accept },
        credentials: 'omit',
      });
    } catch (error) {
      throw classify(error, what);
    }
    if (!response.ok) throw classify(response, what);
    return response;
  }

  /**
   * An image as a blob: URL, fetched once and kept while recently used.
   * @param {string} url @param {string} what
   * @returns {Promise<string>}
   */
  image(url, what = 'This image') {
    const cached = this.images.get(url);
    if (cached) {
      this.images.delete(url);
      this.images.set(url, cached);
      return cached;
    }
    const loading = this.get(url, 'image/jpeg', what).then(async (response) => {
      const blob = await response.blob();
      if (!blob.type.startsWith('image/')) throw new Error(`${what} did not come as an image.`);
      return URL.createObjectURL(blob);
    });
    loading.catch(() => this.images.delete(url)); // a failure is asked again next time
    this.images.set(url, loading);
    this.evict();
    return loading;
  }

  evict() {
    while (this.images.size > this.limit) {
      const [oldest, loading] = this.images.entries().next().value;
      this.images.delete(oldest);
      loading.then((blobUrl) => URL.revokeObjectURL(blobUrl), () => {});
    }
  }

  /** DICOM JSON (PS3.18 F.2). @param {string} url @param {string} what */
  async json(url, what) {
    const response = await this.get(url, 'application/dicom+json', what);
    return response.json();
  }

  /**
   * Try each gateway root a study lists (a study several PACS hold has one per PACS) until
   * one has what is asked; "not available" only when none has it.
   * @template T
   * @param {string[]} roots
   * @param {(root: string) => Promise<T>} read
   * @returns {Promise<{root: string, value: T}>}
   */
  async fromAny(roots, read) {
    let last = new NotAvailable('These images are not available to you.');
    for (const root of roots) {
      try {
        return { root, value: await read(root) };
      } catch (error) {
        if (!(error instanceof NotAvailable)) throw error;
        last = error;
      }
    }
    throw last;
  }
}

/** @param {string} root @param {string} study @param {string} series */
export function seriesUrl(root, study, series) {
  return `${root}/studies/${encodeURIComponent(study)}/series/${encodeURIComponent(series)}`;
}
