// The progress line of a download: sizes and speed in decimal units, a speed under 1 kB/s in whole bytes.
import t from 'tap';
import { formatProgress } from '../../lib/download/progress';

t.test('a progress line reads as people write sizes and speeds', async (t) => {
  t.equal(formatProgress('model.safetensors', 20480, null, 736.8421052631579), 'model.safetensors  20.5 kB  737 B/s', 'a rate of bytes is rounded to whole bytes');
  t.match(formatProgress('model.safetensors', 250e6, 500e6, 12.5e6), /^model\.safetensors  50% \[.*\] 250 MB \/ 500 MB  12\.5 MB\/s  ETA /);
});
