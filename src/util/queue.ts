// Queues consumed from a head index: taken entries may hold megabytes, so they are let go soon.

/**
 * The queue without its first `head` (taken) entries, once they are worth dropping: at once when all
 * are taken (the same array, emptied), else once they are more than `minHead` and half the array (a
 * copy). Null when the queue stays as it is. The caller sets its head to 0 on a non-null answer.
 */
export function dropTaken<T>(queue: T[], head: number, minHead: number): T[] | null {
  if (head === queue.length) {
    queue.length = 0;
    return queue;
  }
  if (head > minHead && head * 2 > queue.length) return queue.slice(head);
  return null;
}
