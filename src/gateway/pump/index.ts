export type { BytePump, PumpName, PumpReport } from './byte-pump.js';
export { choosePump, logPump } from './choose-pump.js';
export type { PumpChoice } from './choose-pump.js';
export { JsPump } from './js-pump.js';
export { NativePump, loadNativePump } from './native-pump.js';
export type { NativePumpLoad } from './native-pump.js';
