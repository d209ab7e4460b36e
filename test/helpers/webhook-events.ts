import type { ReceivedRequest } from './receiver.js';

/** The envelope that walhook POSTs for one row change. */
export interface WebhookEvent {
  readonly id: string;
  readonly created_at: string;
  readonly trigger: { readonly name: string };
  readonly table: { readonly schema: string; readonly name: string };
  readonly event: {
    readonly op: 'INSERT' | 'UPDATE' | 'DELETE' | 'TRUNCATE';
    readonly data: {
      readonly old: Record<string, unknown> | null;
      readonly new: Record<string, unknown> | null;
    };
  };
  readonly delivery_info: { readonly max_retries: number | null; readonly current_retry: number };
  readonly lsn: string;
  readonly xid: number;
}

/** Returns the envelope in a request body, or throws when the body is not one. */
export function parseEvent(request: ReceivedRequest): WebhookEvent {
  const body = request.json as Partial<WebhookEvent> | undefined;
  if (
    body === undefined ||
    typeof body.id !== 'string' ||
    typeof body.table?.name !== 'string' ||
    typeof body.event?.op !== 'string'
  ) {
    throw new Error(`request #${request.index} is not a walhook event: ${request.body.slice(0, 200)}`);
  }
  return body as WebhookEvent;
}

/** Returns the new row of an event, or the old row when there is no new one. */
export function rowOf(event: WebhookEvent): Record<string, unknown> {
  const row = event.event.data.new ?? event.event.data.old;
  if (row === null) {
    throw new Error(`event ${event.id} (${event.event.op}) carries no row`);
  }
  return row;
}

/** Events of `requests` for `table`, in order of arrival. */
export function eventsFor(requests: readonly ReceivedRequest[], table: string): WebhookEvent[] {
  return requests.map(parseEvent).filter((event) => event.table.name === table);
}

/**
 * Groups events by the row's `id` column and checks that every copy of a row's event
 * carries the same event id, which is what lets receivers drop repeats. Returns the
 * event id of each row.
 */
export function eventIdsByRow(events: readonly WebhookEvent[]): Map<unknown, string> {
  const ids = new Map<unknown, string>();
  for (const event of events) {
    const rowId = rowOf(event).id;
    const known = ids.get(rowId);
    if (known === undefined) {
      ids.set(rowId, event.id);
    } else if (known !== event.id) {
      throw new Error(`row ${String(rowId)} arrived with two event ids: ${known} and ${event.id}`);
    }
  }
  return ids;
}
