export type { BytePump, PumpName, PumpReport } from './byte-pump.js';
export { chooseNativePump, choosePump, logPump, pumpSetting } from './choose-pump.js';
export type { PumpChoice, PumpSetting } from './choose-pump.js';
export { JsPump } from './js-pump.js';
export { NativePump, loadNativePump } from './native-pump.js';
export type { NativePumpLoad } from './native-pump.js';
