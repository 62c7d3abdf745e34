// f16_enable.wgsl: `enable f16;` when the variant stores f16 natively (define F16, the device has
// shader-f16). Included with `#include f16_enable`; not a kernel. The preprocessor (src/gpu/wgsl.ts)
// moves the directive to the start of the module, ahead of every declaration.
#if F16
enable f16;
#endif
