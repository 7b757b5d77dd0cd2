/** Due apps in app-id order, at most `limit`, starting after `after` ('' = from the first). */
export type DueAppsQuery = (after: string, limit: number) => Promise<string[]>;

/**
 * Which apps a claim looks at when more apps have deliveries due than one claim considers: a window
 * of `limit` apps that moves on from where the last full window ended, wrapping around to the first
 * app, so every app with due deliveries is looked at within ⌈apps / limit⌉ + 1 claims. With fewer
 * due apps than `limit` (the usual case) it is one query from the first app, every claim.
 */
export class DueAppsWindow {
  /** The last app of the last full window; '' when the last window held every due app. */
  private after = '';

  async next(limit: number, query: DueAppsQuery): Promise<string[]> {
    const from = this.after;
    let apps = await query(from, limit);
    if (apps.length < limit && from !== '') {
      // Wrapped: the apps from the first up to where this window started (those after it are all in `apps`).
      const before = (await query('', limit - apps.length)).filter((appId) => appId <= from);
      apps = [...apps, ...before];
    }
    this.after = apps.length >= limit ? apps[apps.length - 1] : '';
    return apps;
  }
}
