"""The accelerator: hardware description, ISA, codegen and the C++ simulator binding."""
