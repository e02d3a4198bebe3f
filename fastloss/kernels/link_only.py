"""A kernel's callees compiled for linking only: LLVM optimizes and emits its code once.

Numba finalizes every function it compiles as if Python were to call it: it
builds the function's Python and C wrappers, links in its callees, runs LLVM's
module optimizations over the result and emits machine code for it.  A kernel
here is a stack of such functions: the loss's scalar maths, the block
templates, and for a parallel kernel the parfor body and the two wrappers
Numba generates around it.  Each links the one below, so the same code was
optimized and emitted once per level (six times for a parallel float32
binary_cross_entropy), and only the kernel's copy ever runs: that kernel's
value_and_grad took 4.2 s to compile, 1.9 s without the repeats.

While a dispatcher marked by ``compiled_alone`` compiles, every other library
finalized is finalized for linking only: its functions get LLVM's function
passes (the kernels' speed depends on them: without them the float64
sigmoid_focal and binary_cross_entropy_with_logits values ran 5% slower), its
callees are linked in as usual, and the wrappers, the module optimization and
the machine code are left undone; the kernel's module receives it all.  A
function compiled that way on the way (an ``fmath`` function, a Numba
overload) still works from Python: its entry point is a trampoline that
finishes its library (``_materialize``) on the first Python call and then
calls it, and any request for a pointer into such a library, or for its object
code (Numba's cache), finishes it first.  Under the CUDA simulator, which calls
the scalar maths from Python all the time, nothing changes.
"""
import ctypes
import weakref

from numba import config

_HANDLER_GLOBAL = "fastloss_link_only_handler"
_TRAMPOLINE = "fastloss_link_only_trampoline"
_ENTRY_TYPE = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.py_object, ctypes.py_object,
                                ctypes.c_void_p)

_trampoline = None        # (its library, its address), built on first use; False: off
_entries = {}             # id(closure) -> (library, fndesc), while the closure lives
_calls = {}               # id(closure) -> the materialized entry point, as a ctypes function
_top = []                 # the kernels being compiled (their py_funcs), innermost last


def _python_call(closure, args):
    """The trampoline's target: call the function of ``closure`` (a Numba entry point's
    ``__self__``) on ``args``, emitting its library's code on its first call."""
    call = _calls.get(id(closure))
    if call is None:
        from numba.core.compiler_lock import global_compiler_lock
        library, fndesc = _entries[id(closure)]
        with global_compiler_lock:
            address = library.get_pointer_to_function(fndesc.llvm_cpython_wrapper_name)
        call = _calls[id(closure)] = _ENTRY_TYPE(address)
    return call(closure, args, None)


def _build_trampoline(codegen):
    """``PyObject *trampoline(closure, args, kws)``: returns ``_python_call(closure, args)``
    (Numba's dispatcher folds keyword arguments into ``args`` before the call)."""
    from llvmlite import ir
    ptr = ir.IntType(8).as_pointer()
    module = ir.Module(_TRAMPOLINE)
    handler = ir.GlobalVariable(module, ptr, _HANDLER_GLOBAL)
    handler.initializer = ir.Constant(ptr, None)
    call_objects = ir.Function(module, ir.FunctionType(ptr, [ptr], var_arg=True),
                               "PyObject_CallFunctionObjArgs")
    function = ir.Function(module, ir.FunctionType(ptr, [ptr, ptr, ptr]), _TRAMPOLINE)
    builder = ir.IRBuilder(function.append_basic_block())
    closure, args, _ = function.args
    target = builder.load(handler)
    builder.ret(builder.call(call_objects, [target, closure, args, ir.Constant(ptr, None)]))
    library = codegen.create_library(_TRAMPOLINE)
    library.add_ir_module(module)
    library.finalize()
    address = codegen._engine.get_global_value_address(_HANDLER_GLOBAL)
    ctypes.c_void_p.from_address(address).value = id(_python_call)
    return library, library.get_pointer_to_function(_TRAMPOLINE)


def _materialize(library):
    """Do what finalizing ``library`` for linking only left out: build its functions'
    Python and C wrappers, optimize its module, emit its machine code and give its
    functions their environments."""
    library._fastloss_link_only = False
    wrappers = library.__dict__.pop("_fastloss_wrappers", ())
    library._finalized = False
    for build in wrappers:
        build()
    library._finalized = True
    library._optimize_final_module()
    cleanup = library.codegen._add_module(library._final_module)
    if cleanup:
        weakref.finalize(library, cleanup)
    library._finalize_specific()
    for env_name, env in library._fastloss_envs:
        library.codegen.set_env(env_name, env)


def _finish_for_linking(library):
    # CPUCodeLibrary._finalize_final_module, less adding the module to the engine
    library._finalize_dynamic_globals()
    library._verify_declare_only_symbols()
    library._final_module._CPUCodeLibrary__library = weakref.proxy(library)
    library._fastloss_link_only = True
    library._fastloss_envs = []
    library._finalized = True


def _finalize_for_linking(library, finalize):
    library._optimize_final_module = lambda: None
    library._finalize_final_module = lambda: _finish_for_linking(library)
    try:
        finalize(library)
    finally:
        del library._optimize_final_module, library._finalize_final_module


def _is_kernel(fndesc):
    py_func = _top[-1]
    return fndesc.qualname == py_func.__qualname__ and fndesc.modname == py_func.__module__


# The Numba internals patched or called here; where one is missing (another Numba
# version), kernels compile as plain Numba builds.
_NEEDED = {
    "JITCodeLibrary": ("finalize", "get_pointer_to_function", "serialize_using_object_code",
                       "_optimize_final_module", "_finalize_final_module", "_finalize_specific",
                       "_finalize_dynamic_globals", "_verify_declare_only_symbols"),
    "CPUContext": ("get_executable", "create_cpython_wrapper", "create_cfunc_wrapper",
                   "get_env_name"),
}


def _numba_has_what_is_needed():
    from numba import _dynfunc
    from numba.core import codegen, cpu
    classes = {"JITCodeLibrary": codegen.JITCodeLibrary, "CPUContext": cpu.CPUContext}
    return hasattr(_dynfunc, "make_function") and all(
        hasattr(classes[c], name) for c, names in _NEEDED.items() for name in names)


def _install():
    """Patch Numba's CPU code libraries and context (once; each patch does nothing
    unless a ``compiled_alone`` kernel is compiling or a library is link-only).
    False where this Numba lacks what the patches need."""
    global _trampoline
    if not _numba_has_what_is_needed():
        _trampoline = False
        return False
    from numba import _dynfunc
    from numba.core import codegen, cpu
    library_class, context_class = codegen.JITCodeLibrary, cpu.CPUContext
    finalize = library_class.finalize
    get_executable = context_class.get_executable
    python_wrapper = context_class.create_cpython_wrapper
    c_wrapper = context_class.create_cfunc_wrapper

    def patched_finalize(library):
        if _top and not getattr(library, "_fastloss_kernel", False):
            _finalize_for_linking(library, finalize)
        else:
            finalize(library)

    def finished_first(method):
        def patched_method(library, *args):
            if getattr(library, "_fastloss_link_only", False):
                _materialize(library)
            return method(library, *args)
        return patched_method

    def deferred(wrapper):
        def patched_wrapper(context, library, fndesc, *args, **kwargs):
            if not _top or _is_kernel(fndesc):
                return wrapper(context, library, fndesc, *args, **kwargs)
            library.__dict__.setdefault("_fastloss_wrappers", []).append(
                lambda: wrapper(context, library, fndesc, *args, **kwargs))
        return patched_wrapper

    def patched_get_executable(context, library, fndesc, env):
        if not _top:
            return get_executable(context, library, fndesc, env)
        if _is_kernel(fndesc):
            library._fastloss_kernel = True
            return get_executable(context, library, fndesc, env)
        library._ensure_finalized()
        if not getattr(library, "_fastloss_link_only", False):
            return get_executable(context, library, fndesc, env)
        library._fastloss_envs.append((context.get_env_name(fndesc), env))
        entry = _dynfunc.make_function(fndesc.lookup_module(), fndesc.qualname.split(".")[-1],
                                       f"compiled wrapper for {fndesc.qualname!r}",
                                       _trampoline[1], env, (library, _trampoline[0]))
        key = id(entry.__self__)
        _entries[key] = (library, fndesc)
        weakref.finalize(entry.__self__, _forget, key)
        return entry

    _trampoline = _build_trampoline(_codegen())
    library_class.finalize = patched_finalize
    library_class.get_pointer_to_function = finished_first(library_class.get_pointer_to_function)
    library_class.serialize_using_object_code = finished_first(
        library_class.serialize_using_object_code)
    context_class.get_executable = patched_get_executable
    context_class.create_cpython_wrapper = deferred(python_wrapper)
    context_class.create_cfunc_wrapper = deferred(c_wrapper)
    return True


def _codegen():
    from numba.core.registry import cpu_target
    return cpu_target.target_context.codegen()


def _forget(key):
    _entries.pop(key, None)
    _calls.pop(key, None)


def compiled_alone(dispatcher):
    """Make ``dispatcher`` (a kernel that Python calls) compile the functions it calls
    for linking only (see above)."""
    if config.ENABLE_CUDASIM:
        return dispatcher
    compile_default = dispatcher.compile

    def compile(sig):
        from numba.core.compiler_lock import global_compiler_lock
        with global_compiler_lock:
            if _trampoline is None:
                _install()
            if not _trampoline:
                return compile_default(sig)
            _top.append(dispatcher.py_func)
            try:
                return compile_default(sig)
            finally:
                _top.pop()

    dispatcher.compile = compile
    return dispatcher
